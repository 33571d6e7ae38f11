#!/usr/bin/env bash
# run.sh — start and stop the peer servers the benchmark compares wiresocket against.
#
#   JWT_SECRET=... API_KEY=... bench/peers/run.sh start NAME PORT CORES STATE_DIR
#   bench/peers/run.sh stop STATE_DIR
#
# NAME: node-ws | socketio | nchan | tokio-ws. `start` launches the peer (plus a private
# redis-server for node-ws and socketio) in the background with its logs in STATE_DIR,
# waits (at most 30 s) for GET http://127.0.0.1:PORT/health to answer 200, and prints
# exactly one line on stdout:
#   PIDS=<every pid of the system under test>
# node-ws and socketio also write STATE_DIR/redis: "<redis URL> <redis pid>".
# Everything else goes to stderr. `stop` sends TERM to those pids, KILL after 5 s, and is
# safe to call twice. Run bench/peers/install.sh first.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
HEALTH_TIMEOUT_S=30

say() { echo "run.sh: $*" >&2; }
die() {
	echo "run.sh: error: $*" >&2
	exit 1
}
usage() {
	cat >&2 <<EOF
usage: JWT_SECRET=... API_KEY=... $0 start NAME PORT CORES STATE_DIR
       $0 stop STATE_DIR
NAME is one of: node-ws socketio nchan tokio-ws
EOF
	exit 2
}

# Start time of a process (field 22 of /proc/PID/stat), so `stop` never signals a
# recycled pid.
starttime() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	# After the command name: field 3 is the first; starttime is field 22.
	local -a fields
	read -ra fields <<<"$stat"
	echo "${fields[19]}"
}

# Pids recorded in STATE_DIR/pids whose process is still the one we started.
live_pids() {
	local file=$1/pids pid st
	[[ -f $file ]] || return 0
	while read -r pid st; do
		[[ -n $pid ]] || continue
		[[ $(starttime "$pid" 2>/dev/null) == "$st" ]] && echo "$pid"
	done <"$file"
	return 0
}

kill_all() { # STATE_DIR
	local dir=$1 pids i
	pids=$(live_pids "$dir" | tr '\n' ' ')
	if [[ -n ${pids// /} ]]; then
		# shellcheck disable=SC2086
		kill -TERM $pids 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			pids=$(live_pids "$dir" | tr '\n' ' ')
			[[ -z ${pids// /} ]] && break
			sleep 0.1
		done
		if [[ -n ${pids// /} ]]; then
			say "still alive after 5 s, sending KILL to: $pids"
			# shellcheck disable=SC2086
			kill -KILL $pids 2>/dev/null || true
			for ((i = 0; i < 20; i++)); do
				[[ -z $(live_pids "$dir") ]] && break
				sleep 0.1
			done
		fi
	fi
	rm -f "$dir/pids" "$dir/redis.sock"
}

# Launch "$@" detached (own session, stdin from /dev/null) with output in LOG; sets
# LAUNCHED_PID to the pid of the program itself.
launch() { # LOG CMD...
	local log=$1
	shift
	setsid "$@" >>"$log" 2>&1 </dev/null &
	LAUNCHED_PID=$!
	RECORD+=("$LAUNCHED_PID")
}

record_pids() { # STATE_DIR PIDS...
	local dir=$1 pid
	shift
	: >"$dir/pids.tmp"
	for pid in "$@"; do
		echo "$pid $(starttime "$pid" || echo gone)" >>"$dir/pids.tmp"
	done
	mv "$dir/pids.tmp" "$dir/pids"
}

fail_start() { # message; prints the logs' tails, stops what was started
	local msg=$1 f
	say "error: $msg"
	for f in "$STATE_DIR"/*.log; do
		[[ -s $f ]] || continue
		echo "----- tail of $f -----" >&2
		tail -n 30 "$f" >&2
	done
	local -a all=("${RECORD[@]}") fkids
	for f in "${RECORD[@]}"; do
		mapfile -t fkids < <(pgrep -P "$f" || true)
		all+=("${fkids[@]}")
	done
	record_pids "$STATE_DIR" "${all[@]}"
	kill_all "$STATE_DIR"
	exit 1
}

alive() { kill -0 "$1" 2>/dev/null; }

children() { pgrep -P "$1" | tr '\n' ' ' || true; }

count_words() { # shellcheck disable=SC2086
	set -- $1
	echo $#
}

free_port() {
	node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

start_redis() {
	command -v redis-server >/dev/null || fail_start "redis-server not installed (run bench/peers/install.sh)"
	local sock=$STATE_DIR/redis.sock args i
	args=(--save "" --appendonly no --daemonize no --dir "$STATE_DIR" --logfile "$STATE_DIR/redis.log")
	rm -f "$sock"
	if ((${#sock} <= 100)); then
		launch "$STATE_DIR/redis.log" redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 "${args[@]}"
		REDIS_URL="unix://$sock"
		REDIS_CLI=(redis-cli -s "$sock")
	else # a unix socket path this long does not fit in sockaddr_un
		local rport
		rport=$(free_port)
		launch "$STATE_DIR/redis.log" redis-server --bind 127.0.0.1 --port "$rport" "${args[@]}"
		REDIS_URL="redis://127.0.0.1:$rport"
		REDIS_CLI=(redis-cli -h 127.0.0.1 -p "$rport")
	fi
	REDIS_PID=$LAUNCHED_PID
	for ((i = 0; i < 100; i++)); do
		alive "$REDIS_PID" || fail_start "redis-server exited"
		[[ $("${REDIS_CLI[@]}" ping 2>/dev/null) == PONG ]] && return 0
		sleep 0.1
	done
	fail_start "redis-server did not answer PING within 10 s"
}

start_node() { # SCRIPT
	[[ -d $HERE/node/node_modules ]] || fail_start "bench/peers/node/node_modules missing (run bench/peers/install.sh)"
	start_redis
	launch "$STATE_DIR/server.log" env NODE_ENV=production PORT="$PORT" CORES="$CORES" \
		JWT_SECRET="$JWT_SECRET" API_KEY="$API_KEY" REDIS_URL="$REDIS_URL" \
		node "$HERE/node/$1"
	MAIN_PID=$LAUNCHED_PID
	EXTRA_PIDS=("$REDIS_PID")
	# For the harness's Redis readings (INFO, CPU): URL and pid of this system's Redis.
	echo "$REDIS_URL $REDIS_PID" >"$STATE_DIR/redis"
	EXPECT_CHILDREN=$CORES
}

nchan_module() {
	local p
	for p in /usr/lib/nginx/modules/ngx_nchan_module.so /usr/share/nginx/modules/ngx_nchan_module.so; do
		[[ -f $p ]] && echo "$p" && return 0
	done
	p=$(dpkg -L libnginx-mod-nchan 2>/dev/null | grep -m1 '/ngx_nchan_module\.so$' || true)
	[[ -n $p ]] && echo "$p"
}

start_nchan() {
	command -v nginx >/dev/null || fail_start "nginx not installed (run bench/peers/install.sh)"
	local module conf=$STATE_DIR/nginx.conf
	module=$(nchan_module) || true
	[[ -n $module ]] || fail_start "ngx_nchan_module.so not found (run bench/peers/install.sh)"
	# The key is pasted into an nginx string literal: keep it to characters nginx takes
	# literally.
	[[ $API_KEY =~ ^[A-Za-z0-9._~+/=:-]+$ ]] || fail_start "API_KEY must match [A-Za-z0-9._~+/=:-]+ for nchan"
	[[ $STATE_DIR != *[[:space:]\;\'\"]* ]] || fail_start "STATE_DIR must not contain spaces, quotes or ';' for nchan"
	mkdir -p "$STATE_DIR/tmp"
	sed -e "s|@NCHAN_MODULE@|$module|g" -e "s|@CORES@|$CORES|g" -e "s|@PORT@|$PORT|g" \
		-e "s|@STATE_DIR@|$STATE_DIR|g" -e "s|@API_KEY@|$API_KEY|g" \
		"$HERE/nchan/nginx.conf.template" >"$conf"
	nginx -t -q -p "$STATE_DIR/" -c "$conf" -e "$STATE_DIR/error.log" >>"$STATE_DIR/server.log" 2>&1 ||
		fail_start "nginx -t rejected $conf"
	launch "$STATE_DIR/server.log" nginx -p "$STATE_DIR/" -c "$conf" -e "$STATE_DIR/error.log"
	MAIN_PID=$LAUNCHED_PID
	EXTRA_PIDS=()
	EXPECT_CHILDREN=$CORES
}

start_tokio() {
	local bin=${TOKIO_WS_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/tokio-ws-peer}
	[[ -x $bin ]] || fail_start "$bin not built (run bench/peers/install.sh)"
	launch "$STATE_DIR/server.log" env PORT="$PORT" CORES="$CORES" JWT_SECRET="$JWT_SECRET" \
		API_KEY="$API_KEY" "$bin"
	MAIN_PID=$LAUNCHED_PID
	EXTRA_PIDS=()
	EXPECT_CHILDREN=0
}

cmd_start() {
	(($# == 4)) || usage
	NAME=$1 PORT=$2 CORES=$3 STATE_DIR=$4
	if ! [[ $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then die "bad PORT '$PORT'"; fi
	if ! [[ $CORES =~ ^[0-9]+$ ]] || ((CORES < 1)); then die "bad CORES '$CORES'"; fi
	[[ -n ${JWT_SECRET:-} ]] || die "JWT_SECRET must be set"
	[[ -n ${API_KEY:-} ]] || die "API_KEY must be set"
	case $NAME in node-ws | socketio | nchan | tokio-ws) ;; *) die "unknown peer '$NAME' (node-ws, socketio, nchan, tokio-ws)" ;; esac
	mkdir -p "$STATE_DIR"
	STATE_DIR=$(cd "$STATE_DIR" && pwd)
	[[ -z $(live_pids "$STATE_DIR") ]] || die "a peer is already running from $STATE_DIR (run.sh stop $STATE_DIR)"
	if ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .; then
		die "port $PORT is already in use"
	fi
	rm -f "$STATE_DIR"/*.log "$STATE_DIR/redis"
	# Give every process the whole descriptor allowance (20,000 here); nginx sets its own
	# worker_rlimit_nofile.
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	RECORD=()
	trap 'fail_start "interrupted"' INT TERM

	case $NAME in
	node-ws) start_node ws-server.js ;;
	socketio) start_node socketio-server.js ;;
	nchan) start_nchan ;;
	tokio-ws) start_tokio ;;
	esac
	say "started $NAME (pid $MAIN_PID) on 127.0.0.1:$PORT with $CORES cores; logs in $STATE_DIR"

	local deadline=$((SECONDS + HEALTH_TIMEOUT_S)) kids="" p
	while :; do
		for p in "$MAIN_PID" "${EXTRA_PIDS[@]}"; do
			alive "$p" || fail_start "process $p of $NAME exited during start-up"
		done
		kids=$(children "$MAIN_PID")
		if (($(count_words "$kids") >= EXPECT_CHILDREN)) &&
			curl -fsS -o /dev/null -m 1 "http://127.0.0.1:$PORT/health" 2>/dev/null; then
			break
		fi
		((SECONDS < deadline)) || fail_start "GET http://127.0.0.1:$PORT/health did not answer 200 within ${HEALTH_TIMEOUT_S} s"
		sleep 0.1
	done
	trap - INT TERM

	# shellcheck disable=SC2206
	local all=("$MAIN_PID" $kids "${EXTRA_PIDS[@]}")
	record_pids "$STATE_DIR" "${all[@]}"
	echo "$NAME" >"$STATE_DIR/name"
	echo "PIDS=${all[*]}"
}

cmd_stop() {
	(($# == 1)) || usage
	local dir=$1
	if [[ ! -f $dir/pids ]]; then
		say "nothing running from $dir"
		return 0
	fi
	say "stopping $(cat "$dir/name" 2>/dev/null || echo peer): $(live_pids "$dir" | tr '\n' ' ')"
	kill_all "$dir"
}

case ${1:-} in
start)
	shift
	cmd_start "$@"
	;;
stop)
	shift
	cmd_stop "$@"
	;;
*) usage ;;
esac
