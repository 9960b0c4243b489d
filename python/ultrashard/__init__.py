"""UltraShard Python package: the PyTorch twin of the model (see README.md)."""
