"""Typed settings: built once in the entry point, validated, frozen, and passed down.

Sources, highest priority first: keyword arguments, environment variables (``MODERATOR_``
prefix, ``__`` between nested names, e.g. ``MODERATOR_KAFKA__BOOTSTRAP_SERVERS``), then one
optional YAML file. This is the only module that reads the environment.
"""

from __future__ import annotations

import contextvars
import json
import os
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    NoDecode,
    YamlConfigSettingsSource,
)

from moderator.errors import SettingsError

ENV_PREFIX = "MODERATOR_"
_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("_config_file", default=None)


def _renamed(section: str, names: dict[str, str]):
    """A before-validator accepting deprecated field names (``old -> new``) for one release, with a
    FutureWarning naming the new setting; the new name wins when both are given."""

    def rename(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in names.items():
            if old in data:
                value = data.pop(old)
                warnings.warn(
                    f"setting {section}.{old} (MODERATOR_{section.upper().replace('.', '__')}__{old.upper()}) is deprecated: "
                    f"use {section}.{new} (MODERATOR_{section.upper().replace('.', '__')}__{new.upper()}); the old name goes in the next release",
                    FutureWarning, stacklevel=2,
                )
                data.setdefault(new, value)
        return data

    return model_validator(mode="before")(classmethod(rename))


def _split_list(value: Any) -> Any:
    """Environment values for list settings: ``a,b`` or a JSON list ``["a", "b"]``."""
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            return tuple(json.loads(value))
        return tuple(t.strip() for t in value.split(",") if t.strip())
    return value


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    """Broker connection, topics and client tuning."""

    bootstrap_servers: str = "127.0.0.1:9092"
    input_topics: Annotated[tuple[str, ...], NoDecode] = ("images",)
    verdict_topic: str = "verdicts"
    dead_letter_topic: str = "verdicts-dlq"
    group_id: str = "moderator"
    client_id: str = "moderator"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: int = Field(30_000, ge=6_000)
    heartbeat_interval_ms: int = Field(3_000, ge=500)
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    max_partition_fetch_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    fetch_max_bytes: int = Field(52_428_800, ge=1024)
    linger_ms: int = Field(5, ge=0)
    delivery_timeout_ms: int = Field(120_000, ge=1_000)
    request_timeout_ms: int = Field(30_000, ge=1_000)
    # Dead letters carry the original value, so the producer must accept the largest input.
    max_request_size: int = Field(20 * 1024 * 1024, ge=1024)
    revoke_timeout_ms: int = Field(20_000, ge=0, description="How long a rebalance waits for in-flight verdicts of revoked partitions.")
    commit_interval_ms: int = Field(1_000, ge=50, description="How often done offsets are committed.")
    lag_interval_ms: int = Field(10_000, ge=0, description="How often consumer lag is measured; 0 disables.")
    retry_initial_ms: int = Field(500, ge=1, description="First backoff cap when reconnecting to the broker or re-sending an output; doubles per attempt, waits drawn with full jitter.")
    retry_max_ms: int = Field(10_000, ge=1, description="Largest backoff cap for broker reconnects and output re-sends.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = Field(None, repr=False)
    ssl_cafile: Path | None = None

    _split_topics = field_validator("input_topics", mode="before")(_split_list)

    @model_validator(mode="after")
    def _check(self) -> KafkaSettings:
        if not self.input_topics:
            raise ValueError("input_topics must name at least one topic")
        outputs = {self.verdict_topic, self.dead_letter_topic}
        if outputs & set(self.input_topics):
            raise ValueError("verdict_topic and dead_letter_topic must differ from the input topics")
        if self.verdict_topic == self.dead_letter_topic:
            raise ValueError("verdict_topic and dead_letter_topic must differ")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be at most a third of session_timeout_ms")
        return self

    def security(self) -> dict[str, Any]:
        """Client keyword arguments for TLS/SASL, shared by consumer, producer and admin."""
        out: dict[str, Any] = {"security_protocol": self.security_protocol}
        for key in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.ssl_cafile is not None:
            out["ssl_cafile"] = str(self.ssl_cafile)
        return out


class BatchSettings(_Section):
    """Micro-batching and the bounded in-flight window."""

    _renamed = _renamed("batch", {"max_size": "micro_batch_size"})

    micro_batch_size: int = Field(32, ge=1, le=4096, description="Images per encoder call: the micro-batch the consumer forms (and the most records one poll returns). Was batch.max_size.")
    max_wait_ms: int = Field(50, ge=0, description="Longest a partial batch waits for more messages.")
    max_in_flight: int = Field(256, ge=1, description="Messages polled but not yet acknowledged; above it partitions pause.")
    resume_at: float = Field(0.5, gt=0, lt=1, description="Resume paused partitions when in-flight falls below this fraction.")


class MediaSettings(_Section):
    """Decoding limits and the decode pool."""

    max_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest encoded image accepted.")
    max_pixels: int = Field(50_000_000, ge=1, description="Largest width x height decoded.")
    max_side: int = Field(20_000, ge=1, description="Largest width or height decoded.")
    max_frames: int = Field(32, ge=1, le=1024, description="Most frames of one message scored; more distinct frames than this is an overflow (the policy's frames.on_overflow decides).")
    max_decoded_frames: int = Field(2_000, ge=1, description="Most frames of one message decoded; more is an image_too_large dead letter.")
    max_total_pixels: int = Field(400_000_000, ge=1, description="Most pixels decoded over all frames of one message.")
    max_decode_seconds: float = Field(30.0, gt=0, description="Longest one message's frames may take to decode.")
    max_video_seconds: float = Field(600.0, gt=0, description="Longest video accepted (declared duration, and the last frame's time).")
    frame_change_threshold: float = Field(0.02, ge=0, le=1, description="A frame is scored unless its 16x16 thumbnail differs from every scored frame's by less than this (mean absolute difference, 0..1).")
    decode_workers: int = Field(2, ge=1, le=64)
    background: Annotated[tuple[int, int, int], NoDecode] = Field((255, 255, 255), description="Colour transparent pixels are composited over.")

    _split_background = field_validator("background", mode="before")(_split_list)

    @field_validator("background")
    @classmethod
    def _rgb(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(not 0 <= v <= 255 for v in value):
            raise ValueError("background components must be 0..255")
        return value


class MessageSettings(_Section):
    """Bounds on what one input message may make the parser build (docs/wire-format.md#limits)."""

    max_json_depth: int = Field(16, ge=3, le=512, description="Deepest nesting of a JSON envelope; checked before parsing, so the parser's recursion is bounded.")
    max_id_chars: int = Field(256, ge=1, le=65_536, description="Longest message id (header or envelope); a longer one is refused, not truncated (truncation can merge ids).")
    max_number_chars: int = Field(40, ge=20, le=4_096, description="Longest number literal in an envelope; refused before int()/float() converts it.")
    max_metadata_chars: int = Field(64 * 1024, ge=256, description="Largest metadata (envelope metadata plus passed-through headers) echoed into a verdict, in characters.")
    max_metadata_entries: int = Field(1024, ge=1, description="Most keys and list items in metadata, counted at every level.")
    max_metadata_depth: int = Field(8, ge=1, le=64, description="Deepest nesting of metadata objects and lists.")
    max_headers: int = Field(64, ge=1, description="Most Kafka headers on one input record.")


class RaySettings(_Section):
    """The Ray Serve backend: where the cluster is, and how the encoder deployment is sized."""

    _renamed = _renamed("encoder.ray", {"max_batch_size": "replica_batch_size"})

    address: str | None = Field(None, description="Ray cluster to join (`auto`, `ray://host:10001`, `host:6379`); empty starts a local Ray in this process.")
    app_name: str = Field("moderator-encoder", description="Serve application holding the encoder deployment.")
    deployment: str = Field("Encoder", description="Name of the encoder deployment inside the application.")
    deploy: bool = Field(True, description="Deploy the encoder application from these settings when it is not running; false = only connect (RayService, `serve deploy`).")
    num_replicas: int = Field(1, ge=1, description="Encoder replicas (the minimum when autoscaling).")
    max_replicas: int | None = Field(None, ge=1, description="Set above num_replicas to autoscale between the two.")
    target_ongoing_requests: float = Field(4.0, gt=0, description="Autoscaling target: in-flight batches per replica.")
    max_ongoing_requests: int = Field(64, ge=1, description="Batches a replica accepts at once; must exceed the consumers' concurrency or @serve.batch cannot form batches.")
    replica_batch_size: int = Field(64, ge=1, description="Images per encoder call inside a replica (@serve.batch merges consumer batches up to this; larger client batches are split). Was encoder.ray.max_batch_size.")
    batch_wait_timeout_s: float = Field(0.005, ge=0, description="How long a replica waits to fill a batch.")
    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per encoder replica.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per encoder replica (fractions share a GPU).")
    request_timeout_s: float = Field(30.0, gt=0, description="Longest one encoder call may take before it counts as failed.")

    @model_validator(mode="after")
    def _check(self) -> RaySettings:
        if self.max_replicas is not None and self.max_replicas < self.num_replicas:
            raise ValueError("max_replicas must be at least num_replicas")
        return self


class TritonSettings(_Section):
    """The Triton Inference Server backend (a repository from `moderator models triton-repo`)."""

    _renamed = _renamed("encoder.triton", {"max_batch_size": "request_batch_size"})

    url: str = Field("127.0.0.1:8001", description="host:port of Triton's gRPC (default) or HTTP endpoint.")
    protocol: Literal["grpc", "http"] = "grpc"
    image_model: str = Field("moderator_image", description="Triton model taking uint8 `pixels` [N,S,S,3].")
    text_model: str = Field("moderator_text", description="Triton model taking int64 `input_ids` [N,context].")
    model_version: str = Field("", description="Model version to call; empty = Triton's latest.")
    timeout_s: float = Field(10.0, gt=0, description="Per-request timeout.")
    retries: int = Field(2, ge=0, description="Immediate retries of a failed request before the worker's backoff takes over.")
    request_batch_size: int = Field(64, ge=1, description="Images in the largest request sent; larger batches are split (the smaller of this and the model's max_batch_size is used). Was encoder.triton.max_batch_size.")
    ssl: bool = False


class EncoderSettings(_Section):
    """Which backend serves the model, and how."""

    backend: Literal["onnx", "ray", "triton"] = Field("onnx", description="onnx = in-process onnxruntime; ray = a Ray Serve deployment; triton = a Triton server.")
    model_dir: Path = Path("models/default")
    precision: str = Field("fp32", description="Model variant named in the manifest (fp16 needs a GPU provider; on CPU fp32 is served).")
    providers: Annotated[tuple[str, ...] | None, NoDecode] = Field(None, description="onnxruntime execution providers, in order; default: best available.")
    intra_op_threads: int = Field(0, ge=0, description="0 = onnxruntime's default (one per core).")
    verify_checksums: bool = True

    _split_providers = field_validator("providers", mode="before")(_split_list)
    retry_initial_ms: int = Field(200, ge=1)
    retry_max_ms: int = Field(10_000, ge=1)
    startup_timeout_s: float = Field(300.0, ge=0, description="How long start-up waits for a remote backend (Ray, Triton) to answer.")
    ray: RaySettings = RaySettings()
    triton: TritonSettings = TritonSettings()


class PolicySettings(_Section):
    path: Path = Path("policies/default.yaml")
    reload_interval_s: float = Field(2.0, ge=0, description="How often the policy file is checked for changes; 0 = only on SIGHUP.")
    shadow_path: Path | None = Field(None, description="A candidate policy scored on the same embeddings, reported in verdicts, never acted on.")
    cache_dir: Path | None = Field(Path(".cache/moderator/embeddings"), description="Text-embedding cache; empty = no cache on disk.")

    @field_validator("shadow_path", "cache_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class HashingSettings(_Section):
    banks_dir: Path | None = Field(None, description="Directory of hash bank files (<bank>.csv, docs/policies.md#hash-banks); empty = no banks.")
    reload_interval_s: float = Field(5.0, ge=0, description="How often the bank directory is checked for changes; 0 = only on SIGHUP.")
    pdq: bool = Field(True, description="Hash every scored frame with PDQ (about 5 ms per 640x480 frame); off = SHA-256 only, PDQ banks never match.")
    pdq_quality_floor: int = Field(50, ge=0, le=100, description="PDQ hashes of lower quality (flat, featureless frames) never match a bank.")
    cache_size: int = Field(10_000, ge=0, description="Result cache entries (an identical repost is decided without decode or encode); 0 = off.")
    max_bank_entries: int = Field(10_000_000, ge=1, description="Most hashes over all banks (about 130 bytes each in memory).")

    @field_validator("banks_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class TelemetrySettings(_Section):
    host: str = "0.0.0.0"
    port: int = Field(9400, ge=0, le=65535, description="HTTP port for /metrics, /healthz, /readyz; 0 picks a free one.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"


class Settings(BaseSettings):
    """Everything the service needs, validated once at start."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        protected_namespaces=(),
    )

    kafka: KafkaSettings = KafkaSettings()
    batch: BatchSettings = BatchSettings()
    message: MessageSettings = MessageSettings()
    media: MediaSettings = MediaSettings()
    encoder: EncoderSettings = EncoderSettings()
    policy: PolicySettings = PolicySettings()
    hashing: HashingSettings = HashingSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    shutdown_timeout_s: float = Field(60.0, gt=0, description="Longest SIGTERM waits for in-flight work.")
    shutdown_grace_s: float = Field(15.0, gt=0, description="After SIGTERM, the process exits (code 1) if still running shutdown_timeout_s + this; nothing uncommitted is lost, it is redelivered.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file.get()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from overrides, the environment and an optional YAML file.

    ``config_file`` defaults to ``$MODERATOR_CONFIG`` when set.

    Raises:
        SettingsError: naming every invalid field, with the environment variable that sets it.
    """
    if config_file is None and os.environ.get(f"{ENV_PREFIX}CONFIG"):
        config_file = os.environ[f"{ENV_PREFIX}CONFIG"]
    path = Path(config_file) if config_file is not None else None
    if path is not None and not path.is_file():
        raise SettingsError(f"settings file {path} does not exist")
    token = _config_file.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, path)) from exc
    except ValueError as exc:  # YAML syntax errors and bad JSON in a variable surface as ValueError
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise SettingsError(f"invalid settings: {exc}{cause}") from exc
    finally:
        _config_file.reset(token)


def _describe(exc: ValidationError, path: Path | None) -> str:
    lines = [f"invalid settings ({exc.error_count()} error(s)):"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc) or "(root)"
        env = ENV_PREFIX + "__".join(p.upper() for p in loc) if loc else ENV_PREFIX + "*"
        lines.append(f"  {field}: {err['msg']} (set by {env}" + (f" or {path}" if path else "") + ")")
    return "\n".join(lines)
