# Shared by scripts/tracking_server.sh and scripts/connect_server.sh (sourced, not run): a
# server started in a session of its own (setsid), tracked by a pid file, stopped as a group.
# The sourcing script defines die().

# The pid in PIDFILE if that process is alive (exit 1 otherwise).
daemon_pid() {
  local pidfile="$1"
  [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null && cat "$pidfile"
}

# Wait until PROBE... succeeds; die when the server exits first or SECONDS pass.
daemon_wait() {
  local pidfile="$1" seconds="$2" log="$3"
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" 2>/dev/null; do
    kill -0 "$(cat "$pidfile")" 2>/dev/null || die "the server exited (see $log)"
    (( SECONDS < deadline )) || die "the server did not answer within $seconds s (see $log)"
    sleep 1
  done
}

# TERM the server's whole process group, KILL what is left after 10 s, remove the pid file.
daemon_stop() {
  local pidfile="$1" pid
  if pid="$(daemon_pid "$pidfile")"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}
