# Sourced by sessions.sh and sessions_dist.sh (not a test itself: tests/run
# runs only tests/integration/*.sh). write_three_part_session DIR writes one
# session "s1" fed over three jobs (DIR/j1..j3.jsonl; only the last generates,
# 24 tokens) and the same text as one prompt without a session (DIR/one.jsonl):
# the two must generate the same tokens. Sets THREE_PART_BYTES to the text's
# length in bytes (= tokens: the tiny models are byte-level).
write_three_part_session() {
  local d=$1
  local A='Hello there, this is part one of a long session. '
  local P='And here is part two, continuing on. '
  local C='Part three asks: '
  printf '{"id":"a","session":"s1","prompt":"%s","max_tokens":0}\n' "$A" > "$d/j1.jsonl"
  printf '{"id":"b","session":"s1","prompt":"%s","max_tokens":0}\n' "$P" > "$d/j2.jsonl"
  printf '{"id":"c","session":"s1","prompt":"%s","max_tokens":24}\n' "$C" > "$d/j3.jsonl"
  printf '{"id":"c","prompt":"%s%s%s","max_tokens":24}\n' "$A" "$P" "$C" > "$d/one.jsonl"
  THREE_PART_BYTES=$(( ${#A} + ${#P} + ${#C} ))
}
