"""Known content: SHA-256 and PDQ hashes of every image, banks of known hashes (deny and allow),
and the result cache that makes reposts nearly free. Order of stages: docs/policies.md#known-content."""
