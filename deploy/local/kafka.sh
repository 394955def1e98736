#!/usr/bin/env bash
# Run a real single-node Apache Kafka broker (KRaft, broker+controller) on 127.0.0.1.
#
#   deploy/local/kafka.sh fetch     download the pinned broker jars with mvn into the cache
#   deploy/local/kafka.sh start     fetch if needed, format storage once, start, wait until it answers
#   deploy/local/kafka.sh stop      stop cleanly (SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT s)
#   deploy/local/kafka.sh restart   stop then start; the log directory (topics, offsets) is kept
#   deploy/local/kafka.sh status    exit 0 when running
#   deploy/local/kafka.sh reset     stop and delete the data directory
#
# Environment (all optional):
#   KAFKA_VERSION          pinned broker version (default 4.1.1; runs on Java 17)
#   KAFKA_PORT             client listener port (default 9092)
#   KAFKA_CONTROLLER_PORT  controller listener port (default KAFKA_PORT+1)
#   KAFKA_DATA_DIR         config, logs, pid file and log.dirs (default .cache/kafka/data-$KAFKA_PORT)
#   KAFKA_CACHE_DIR        where the jars go (default .cache/kafka)
#   KAFKA_HEAP             JVM heap (default 512m)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 90)
#   KAFKA_AUTO_CREATE      true: the broker creates topics on first use, as a default-configured one does
#   KAFKA_TLS_DIR          a directory with ca.pem (the CA) and broker.pem (the broker's key and certificate
#                          chain, PEM): adds an SSL listener on KAFKA_PORT+2 that requires client
#                          certificates, and a SASL_SSL listener on KAFKA_PORT+3 with SCRAM-SHA-256/512
#                          (create users with: kafka.sh scram-user NAME PASSWORD) and OAUTHBEARER (the
#                          broker's built-in validator of unsigned tokens: for tests only)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
version=${KAFKA_VERSION:-4.1.1}
log4j_version=2.24.3
port=${KAFKA_PORT:-9092}
cport=${KAFKA_CONTROLLER_PORT:-$((port + 1))}
cache=${KAFKA_CACHE_DIR:-$root/.cache/kafka}
data=${KAFKA_DATA_DIR:-$cache/data-$port}
libs=$cache/libs-$version
pidfile=$data/broker.pid

log() { echo "kafka.sh: $*" >&2; }

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "mvn not found: install Maven (apt-get install maven)"; exit 2; }
  command -v java >/dev/null || { log "java not found: install a JDK >= 17"; exit 2; }
  local work; work=$(mktemp -d)
  cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>moderator.local</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$log4j_version</version></dependency>
  </dependencies>
</project>
POM
  log "fetching Apache Kafka $version broker jars into $libs"
  rm -rf "$libs.tmp"
  mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs.tmp" >&2
  rm -rf "$work" "$libs"
  mv "$libs.tmp" "$libs"
  touch "$libs/.complete"
}

classpath() { echo "$libs/*"; }

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

answers() {
  # The client port accepts connections and the broker logged that it finished starting.
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || return 1
  grep -q "Kafka Server started" "$data/logs/server.log" 2>/dev/null
}

write_config() {
  mkdir -p "$data/logs" "$data/kraft"
  local listeners="PLAINTEXT://127.0.0.1:$port" protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [ -n "${KAFKA_TLS_DIR:-}" ]; then
    listeners="$listeners,SSL://127.0.0.1:$((port + 2)),SASL_SSL://127.0.0.1:$((port + 3))"
    protocols="$protocols,SSL:SSL,SASL_SSL:SASL_SSL"
  fi
  cat >"$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$data/kraft
num.partitions=1
auto.create.topics.enable=${KAFKA_AUTO_CREATE:-false}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=20971520
PROPS
  if [ -n "${KAFKA_TLS_DIR:-}" ]; then
    cat >>"$data/server.properties" <<PROPS
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_TLS_DIR/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_TLS_DIR/ca.pem
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,OAUTHBEARER
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
PROPS
  fi
  cat >"$data/log4j2.properties" <<L4J
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $data/logs/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.org.name = org.apache.kafka
logger.org.level = WARN
L4J
}

start() {
  if running; then log "already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; return 0; fi
  fetch
  write_config
  if [ ! -f "$data/kraft/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java -cp "$(classpath)" kafka.tools.StorageTool random-uuid)
    java -cp "$(classpath)" kafka.tools.StorageTool format -t "$cluster_id" -c "$data/server.properties" >&2
  fi
  : >"$data/logs/server.log"
  nohup java -Xms256m -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$data/log4j2.properties" \
    -cp "$(classpath)" kafka.Kafka "$data/server.properties" \
    >"$data/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  until answers; do
    if ! running; then log "broker exited during start; last lines of $data/logs:"; tail -n 30 "$data/logs/stdout.log" "$data/logs/server.log" >&2; exit 1; fi
    if [ $SECONDS -ge $deadline ]; then log "broker did not answer within ${KAFKA_START_TIMEOUT:-90}s"; stop; exit 1; fi
    sleep 0.3
  done
  log "broker $version up on 127.0.0.1:$port (pid $(cat "$pidfile"), data $data)"
}

stop() {
  if ! running; then rm -f "$pidfile"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + ${KAFKA_STOP_TIMEOUT:-60}))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then log "broker did not stop in time; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
    sleep 0.2
  done
  rm -f "$pidfile"
  log "broker on 127.0.0.1:$port stopped"
}

scram_user() {
  # The broker's own tool (kafka-configs.sh): a SCRAM-SHA-256 and -512 credential for a user.
  local name=$1 password=$2 mechanism
  for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do  # one credential per request
    java -cp "$(classpath)" kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$port" --alter \
      --add-config "$mechanism=[iterations=4096,password=$password]" --entity-type users --entity-name "$name" >&2
  done
}

case "${1:-}" in
  scram-user) scram_user "$2" "$3" ;;
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) running ;;
  reset) stop; rm -rf "$data" ;;
  *) echo "usage: $0 {fetch|start|stop|restart|status|reset|scram-user NAME PASSWORD}" >&2; exit 2 ;;
esac
