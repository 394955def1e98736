"""moderator: streaming image moderation with CLIP-family encoders and YAML policies."""

__version__ = "0.1.0"
