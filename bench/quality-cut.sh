# Sourced by the quality runs that cut their drivers at a deadline (bench/quality-run16.sh, -run19.sh, -run20.sh).
# cut SECONDS CMD...: runs CMD in a new process group and ends the whole group (the driver and its cells) after
# SECONDS, so a call never overruns the device's limit; a cut cell's scored rounds stay in its log.
cut() {
  local t=$1
  shift
  setsid "$@" &
  local pid=$!
  (sleep "$t" && kill -TERM -- -"$pid" 2>/dev/null) &
  local killer=$!
  wait "$pid"
  kill "$killer" 2>/dev/null
}
