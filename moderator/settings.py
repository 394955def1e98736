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

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from moderator import bundled
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
                    FutureWarning,
                    stacklevel=2,
                )
                data.setdefault(new, value)
        return data

    return model_validator(mode="before")(classmethod(rename))  # type: ignore[arg-type]  # pydantic's stub wants the bare function


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
    retry_initial_ms: int = Field(
        500, ge=1, description="First backoff cap when reconnecting to the broker or re-sending an output; doubles per attempt, waits drawn with full jitter."
    )
    retry_max_ms: int = Field(10_000, ge=1, description="Largest backoff cap for broker reconnects and output re-sends.")
    # --- output, rebalancing, fetching ---
    compression_type: Literal["zstd", "lz4", "gzip", "snappy", "none"] = Field(
        "zstd", description="Producer compression of verdicts and dead letters (docs/benchmarks.md#producer-compression)."
    )
    partition_assignment: Literal["cooperative-sticky", "range", "roundrobin"] = Field(
        "cooperative-sticky", description="cooperative-sticky: a rebalance moves only the partitions that change owner; the others keep flowing."
    )
    group_instance_id: str | None = Field(
        None, description="Static membership (e.g. the pod name): a worker restarted within session_timeout_ms gets its partitions back without a rebalance."
    )
    client_rack: str | None = Field(None, description="The worker's rack or zone: fetches from the nearest replica where the broker allows it.")
    fetch_min_bytes: int = Field(1, ge=1, description="Smallest fetch answer the broker waits for (up to fetch_max_wait_ms).")
    fetch_max_wait_ms: int = Field(500, ge=0, description="Longest the broker waits to fill fetch_min_bytes.")
    isolation_level: Literal["read_uncommitted", "read_committed"] = Field(
        "read_uncommitted", description="read_committed when the upstream producer is transactional: aborted images are never read."
    )

    # --- security (docs/operations.md#production-checklist) ---
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl_cafile: Path | None = Field(None, description="CA bundle (PEM) that signed the brokers' certificates; default: the system's.")
    ssl_certfile: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    ssl_keyfile: Path | None = Field(None, description="Client private key (PEM) for mutual TLS.")
    ssl_password: SecretStr | None = Field(None, description="Password of the client key, if it is encrypted.")
    ssl_password_file: Path | None = Field(None, description="File holding ssl_password (e.g. a mounted Kubernetes secret).")
    ssl_check_hostname: bool = Field(True, description="Check that the broker's certificate names the host connected to.")
    ssl_crlfile: Path | None = Field(None, description="Certificate revocation list (PEM) to check broker certificates against.")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_plain_username: str | None = Field(None, description="SASL PLAIN and SCRAM user name.")
    sasl_plain_password: SecretStr | None = Field(None, description="SASL PLAIN and SCRAM password.")
    sasl_plain_password_file: Path | None = Field(None, description="File holding sasl_plain_password (e.g. a mounted Kubernetes secret).")
    sasl_oauth_token_file: Path | None = Field(
        None, description="OAUTHBEARER: a file holding the token, read again at every (re)authentication (a sidecar keeps it fresh)."
    )
    sasl_oauth_token_command: str | None = Field(
        None, description="OAUTHBEARER: a command printing the token, run at every (re)authentication (shell-free: split like a shell would)."
    )

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
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)")
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(f"sasl_mechanism needs security_protocol SASL_SSL or SASL_PLAINTEXT, not {self.security_protocol}")
        if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            if not self.sasl_plain_username or (self.sasl_plain_password is None and self.sasl_plain_password_file is None):
                raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_plain_username and sasl_plain_password (or sasl_plain_password_file)")
        if self.sasl_mechanism == "OAUTHBEARER" and (self.sasl_oauth_token_file is None) == (self.sasl_oauth_token_command is None):
            raise ValueError("sasl_mechanism OAUTHBEARER needs exactly one of sasl_oauth_token_file and sasl_oauth_token_command")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("mutual TLS needs both ssl_certfile and ssl_keyfile")
        for a, b in (("ssl_password", "ssl_password_file"), ("sasl_plain_password", "sasl_plain_password_file")):
            if getattr(self, a) is not None and getattr(self, b) is not None:
                raise ValueError(f"set {a} or {b}, not both")
        if self.group_instance_id is not None and not self.group_instance_id.strip():
            raise ValueError("group_instance_id must not be blank")
        return self

    def secret(self, name: str) -> str | None:
        """A secret's value: from its setting, else read from its ``_file`` (stripped of one
        trailing newline), at the moment it is needed.

        Raises:
            SettingsError: the file cannot be read (the message names the setting, never the value).
        """
        value = getattr(self, name)
        if value is not None:
            return value.get_secret_value()
        path = getattr(self, f"{name}_file")
        if path is None:
            return None
        try:
            return Path(path).read_text().removesuffix("\n")
        except OSError as exc:
            raise SettingsError(f"kafka.{name}_file: cannot read {path}: {exc.strerror or exc}") from exc


class BatchSettings(_Section):
    """Micro-batching and the bounded in-flight window."""

    _renamed = _renamed("batch", {"max_size": "micro_batch_size"})

    micro_batch_size: int = Field(
        32,
        ge=1,
        le=4096,
        description="Images per encoder call: the micro-batch the consumer forms (and the most records one poll returns). Was batch.max_size.",
    )
    max_wait_ms: int = Field(50, ge=0, description="Longest a partial batch waits for more messages.")
    max_in_flight: int = Field(256, ge=1, description="Messages polled but not yet acknowledged; above it partitions pause.")
    resume_at: float = Field(0.5, gt=0, lt=1, description="Resume paused partitions when in-flight falls below this fraction.")


class MediaSettings(_Section):
    """Decoding limits and the decode pool."""

    max_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest encoded image accepted.")
    max_pixels: int = Field(50_000_000, ge=1, description="Largest width x height decoded.")
    max_side: int = Field(20_000, ge=1, description="Largest width or height decoded.")
    max_frames: int = Field(
        32,
        ge=1,
        le=1024,
        description="Most frames of one message scored; more distinct frames than this is an overflow (the policy's frames.on_overflow decides).",
    )
    fast_decode: bool = Field(
        True,
        description="Large JPEGs decoded at a reduced DCT scale (to at least twice the model input, and PDQ's 512 px when hashing) and two-step resizes; false = the training transform exactly.",
    )
    crops: Literal["auto", "centre", "cover"] = Field(
        "auto",
        description=(
            "What is scored of a frame that is not square, for models that crop (resize_mode shortest, CLIP's): 'cover' = squares"
            " from one edge to the other, the centre one included (up to 3:1 at 5, anything half a square across lies whole in one);"
            " 'centre' = the centre square alone, as the model was trained (cheaper; content at the ends of wide or tall images is"
            " never seen); 'auto' = what the model's manifest says (preprocess.crops: the default model says centre), else cover."
        ),
    )
    max_crops: int = Field(
        5,
        ge=1,
        le=9,
        description=(
            "crops cover: most squares scored of one frame (odd, so the centre square is one); a frame too long for this many to reach"
            " every part (over 5:1 at 5) is an overflow, for the policy's frames.on_overflow."
        ),
    )
    max_decoded_frames: int = Field(2_000, ge=1, description="Most frames of one message decoded; more is an image_too_large dead letter.")
    max_total_pixels: int = Field(400_000_000, ge=1, description="Most pixels decoded over all frames of one message.")
    max_decode_seconds: float = Field(30.0, gt=0, description="Longest one message's frames may take to decode.")
    max_video_seconds: float = Field(600.0, gt=0, description="Longest video accepted (declared duration, and the last frame's time).")
    frame_change_threshold: float = Field(
        0.03,
        ge=0,
        le=1,
        description=(
            "A frame is scored unless what the model sees of it is within this of a scored frame's at every pixel and channel"
            " (0..1; 0.03 is 8 levels of 255); 0 skips none (more than max_frames is then an overflow)."
        ),
    )
    decode_workers: int = Field(2, ge=1, le=64, description="Images decoded at once (threads, or processes in processes mode).")
    decode_mode: Literal["threads", "processes"] = Field(
        "processes",
        description=(
            "Where images are decoded: 'processes' (decode_workers processes: uses every core, and a codec that crashes or hangs on one image"
            " costs only that image's dead letter) or 'threads' (in the service process)."
        ),
    )
    decode_memory_mb: int = Field(
        2048,
        ge=0,
        description=(
            "decode_mode processes: how much memory each decode process may allocate beyond what it holds once started; an image"
            " that needs more is an image_too_large dead letter, not the pod's OOM kill. 0 = no cap."
        ),
    )
    background: Annotated[tuple[int, int, int], NoDecode] = Field((255, 255, 255), description="Colour transparent pixels are composited over.")
    second_background: Annotated[tuple[int, int, int], NoDecode] = Field(
        (54, 57, 63),
        description=(
            "A frame with transparency is also scored composited over this colour (a dark page, where the default background is a"
            " light one): a white drawing on a transparent background is invisible over white. Equal to background: one rendering."
        ),
    )

    _split_background = field_validator("background", "second_background", mode="before")(_split_list)

    @field_validator("max_crops")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("max_crops must be odd: the centre square, the one the model was trained on, is always one of them")
        return value

    @field_validator("background", "second_background")
    @classmethod
    def _rgb(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(not 0 <= v <= 255 for v in value):
            raise ValueError("background components must be 0..255")
        return value


class MessageSettings(_Section):
    """Bounds on what one input message may make the parser build (docs/wire-format.md#limits)."""

    max_json_depth: int = Field(
        16, ge=3, le=512, description="Deepest nesting of a JSON envelope; checked before parsing, so the parser's recursion is bounded."
    )
    max_id_chars: int = Field(
        256, ge=1, le=65_536, description="Longest message id (header or envelope); a longer one is refused, not truncated (truncation can merge ids)."
    )
    max_number_chars: int = Field(40, ge=20, le=4_096, description="Longest number literal in an envelope; refused before int()/float() converts it.")
    max_metadata_chars: int = Field(
        64 * 1024, ge=256, description="Largest metadata (envelope metadata plus passed-through headers) echoed into a verdict, in characters."
    )
    max_metadata_entries: int = Field(1024, ge=1, description="Most keys and list items in metadata, counted at every level.")
    max_metadata_depth: int = Field(8, ge=1, le=64, description="Deepest nesting of metadata objects and lists.")
    max_headers: int = Field(64, ge=1, description="Most Kafka headers on one input record.")


class RaySettings(_Section):
    """The Ray Serve backend: where the cluster is, and how the encoder deployment is sized."""

    _renamed = _renamed("encoder.ray", {"max_batch_size": "replica_batch_size"})

    address: str | None = Field(None, description="Ray cluster to join (`auto`, `ray://host:10001`, `host:6379`); empty starts a local Ray in this process.")
    app_name: str = Field("moderator-encoder", description="Serve application holding the encoder deployment.")
    deployment: str = Field("Encoder", description="Name of the encoder deployment inside the application.")
    deploy: bool = Field(
        True, description="Deploy the encoder application from these settings when it is not running; false = only connect (RayService, `serve deploy`)."
    )
    num_replicas: int = Field(1, ge=1, description="Encoder replicas (the minimum when autoscaling).")
    max_replicas: int | None = Field(None, ge=1, description="Set above num_replicas to autoscale between the two.")
    target_ongoing_requests: float = Field(4.0, gt=0, description="Autoscaling target: in-flight batches per replica.")
    max_ongoing_requests: int = Field(
        64, ge=1, description="Batches a replica accepts at once; must exceed the consumers' concurrency or @serve.batch cannot form batches."
    )
    replica_batch_size: int = Field(
        64,
        ge=1,
        description="Images per encoder call inside a replica (@serve.batch merges consumer batches up to this; larger client batches are split). Was encoder.ray.max_batch_size.",
    )
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
    request_batch_size: int = Field(
        64,
        ge=1,
        description="Images in the largest request sent; larger batches are split (the smaller of this and the model's max_batch_size is used). Was encoder.triton.max_batch_size.",
    )
    ssl: bool = False


class EncoderSettings(_Section):
    """Which backend serves the model, and how."""

    backend: Literal["onnx", "ray", "triton"] = Field(
        "onnx", description="onnx = in-process onnxruntime; ray = a Ray Serve deployment; triton = a Triton server."
    )
    model_dir: Path = Field(
        default_factory=bundled.model_dir, description="Model directory; default: the bundled pictogram model (package data, moderator/bundled.py)."
    )
    precision: str = Field(
        "fp32",
        description=(
            "Model variant named in the manifest; served as asked or refused at start (fp16 needs a GPU provider)."
            " 'auto' (onnx backend): the fastest variant on this machine, measured at start, among those whose recorded agreement"
            " with fp32 reaches auto_min_cosine."
        ),
    )
    auto_min_cosine: float = Field(
        0.998,
        gt=0,
        le=1,
        description="precision auto serves a variant only if its smallest image and text cosine to fp32 (recorded in the manifest) is at least this.",
    )
    providers: Annotated[tuple[str, ...] | None, NoDecode] = Field(None, description="onnxruntime execution providers, in order; default: best available.")
    intra_op_threads: int = Field(0, ge=0, description="0 = onnxruntime's default (one per core).")
    intra_op_spinning: bool = Field(
        False,
        description=(
            "onnxruntime's intra-op threads spin-wait for work between operators (its own default). Off here: on cores shared with"
            " decoding, the spinning is CPU taken from the decoders (docs/benchmarks.md#spinning); on for a host whose cores serve"
            " only the encoder."
        ),
    )
    verify_checksums: bool = True

    _split_providers = field_validator("providers", mode="before")(_split_list)
    retry_initial_ms: int = Field(200, ge=1)
    retry_max_ms: int = Field(10_000, ge=1)
    startup_timeout_s: float = Field(300.0, ge=0, description="How long start-up waits for a remote backend (Ray, Triton) to answer.")
    ray: RaySettings = RaySettings()
    triton: TritonSettings = TritonSettings()

    @model_validator(mode="after")
    def _auto_in_process(self) -> EncoderSettings:
        if self.precision == "auto" and self.backend != "onnx":
            raise ValueError(
                f"precision auto measures the variants on this machine, so it is for the onnx backend; with {self.backend} the replicas"
                " or the server run elsewhere: name the precision (fp32, int8, fp16)"
            )
        return self


class PolicySettings(_Section):
    path: Path = Field(default_factory=bundled.policy_path, description="Policy file; default: the bundled policy for the bundled model.")
    reload_interval_s: float = Field(2.0, ge=0, description="How often the policy file is checked for changes; 0 = only on SIGHUP.")
    shadow_path: Path | None = Field(None, description="A candidate policy scored on the same embeddings, reported in verdicts, never acted on.")
    cache_dir: Path | None = Field(
        default_factory=lambda: bundled.work_dir() / "embeddings",
        description="Text-embedding cache; empty = no cache on disk. Default: .cache/embeddings in a checkout, ~/.cache/moderator/embeddings for an installed package; the image sets /var/cache/moderator/embeddings.",
    )

    @field_validator("shadow_path", "cache_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class HashingSettings(_Section):
    banks_dir: Path | None = Field(None, description="Directory of hash bank files (<bank>.csv, docs/policies.md#hash-banks); empty = no banks.")
    reload_interval_s: float = Field(5.0, ge=0, description="How often the bank directory is checked for changes; 0 = only on SIGHUP.")
    pdq: bool = Field(True, description="Hash every scored frame with PDQ (about 5 ms per 640x480 frame); off = SHA-256 only, PDQ banks never match.")
    pdq_quality_floor: int = Field(50, ge=0, le=100, description="PDQ hashes of lower quality (flat, featureless frames) never match a bank.")
    pdq_turns: bool = Field(
        True,
        description="Deny banks also match a frame's mirror images and quarter turns (PDQ's dihedral hashes: no measurable extra hashing, seven more lookups a frame in one pass); allow banks match only the frame as it is.",
    )
    pdq_trim_borders: bool = Field(
        True,
        description="Deny banks also match a frame with its uniform border cut off (a border added around banked content moves its PDQ past any threshold); costs a second PDQ of frames whose edges are one colour.",
    )
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
    liveness_timeout_s: float = Field(
        120.0, ge=0, description="/healthz fails when the poll loop or the encode thread has made no progress for this long while it has work; 0 = never."
    )


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
    shutdown_grace_s: float = Field(
        15.0,
        gt=0,
        description="After SIGTERM, the process exits (code 1) if still running shutdown_timeout_s + this; nothing uncommitted is lost, it is redelivered.",
    )

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
