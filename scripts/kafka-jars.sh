#!/usr/bin/env bash
# Apache Kafka from Maven Central (tests/kafka/pom.xml: the broker, Kafka's tools and its Java
# clients, with an SLF4J binding) copied into one classpath directory, cached per machine and
# per pom; prints that directory. Used by the README's test command:
#   export SLUICE_KAFKA_LIB="$(scripts/kafka-jars.sh)"
#   java -cp "$SLUICE_KAFKA_LIB/*" org.apache.kafka.tools.TopicCommand --bootstrap-server …
set -euo pipefail
cd "$(dirname "$0")/.."
pom=tests/kafka/pom.xml
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
cache="$(realpath -m "${SLUICE_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}")"
dir="$cache/kafka-$version-$(sha256sum "$pom" | cut -c1-12)"
if [ ! -f "$dir/.complete" ]; then
  for tool in java mvn; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "error: $tool not found: the Kafka tests need Java 17+ and Maven (Debian: openjdk-17-jdk-headless maven)" >&2
      exit 1
    fi
  done
  echo "== fetching Apache Kafka $version from Maven Central into $dir" >&2
  rm -rf "$dir.partial"
  mkdir -p "$cache"
  mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$dir.partial" >&2
  touch "$dir.partial/.complete"
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
fi
echo "$dir"
