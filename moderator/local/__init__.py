"""Local tooling for the demo, the benchmark and the integration tests: the repo's single-node
Kafka broker, sample images of every supported format (and broken ones), and a reader of the
output topics. Not used by the service itself."""
