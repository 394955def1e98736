"""Kafka in and out: consumer group membership, micro-batching, delivery and offset commits."""
