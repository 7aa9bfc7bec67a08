"""Typed, validated configuration loaded from params.yaml.

params.yaml holds `profile: <name>` and one complete block per profile (`tiny`, `paper`), so DVC
stages can depend on exactly `${profile}.<section>` and `dvc exp run -S tiny.train.lr=…` works.
Unknown keys and bad values are errors that name the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

PARAMS_ENV = "DESTA_PARAMS"
PROFILE_ENV = "DESTA_PROFILE"


class ConfigError(ValueError):
    """params.yaml is missing, malformed, or has an unknown key or a bad value."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelsConfig(Section):
    """Backbones: local directories or hub ids (hub ids only where a hub is reachable)."""

    whisper: str
    llm: str
    # None: the backbone LLM labels its own targets (the paper's self-generated property).
    generator: str | None = None


class DataConfig(Section):
    root: str = "data"
    sample_rate: int = Field(16000, gt=0)


class EmbeddedCorpusConfig(Section):
    """The built-in corpus: how many espeak-ng clips to synthesise, and how many with noise."""

    espeak_clips: int = Field(300, ge=0)
    noise_fraction: float = Field(0.25, ge=0, le=1)
    seed: int = 0


class MusicConfig(Section):
    """Source `music` (components/ingest/music.py): melodies rendered with FluidSynth, 32 GM instruments x
    3 registers x 3 tempos; `clips` beyond 288 repeat the combinations with other melodies."""

    clips: int = Field(288, ge=1)
    clip_seconds: float = Field(4.0, gt=0, le=30)
    seed: int = 0


class IngestConfig(Section):
    sources: list[str] = ["embedded"]
    min_duration: float = Field(0.3, gt=0)
    max_duration: float = Field(30.0, gt=0)
    silence_dbfs: float = Field(-60.0, le=0)
    shard_max_mb: int = Field(64, gt=0)
    workers: int = Field(2, ge=1)
    embedded: EmbeddedCorpusConfig = EmbeddedCorpusConfig()
    # Source `drumkits` (Debian hydrogen-drumkits, components/ingest/drumkits.py): clips per sound category.
    drum_clips_per_category: int = Field(40, ge=1)
    music: MusicConfig = MusicConfig()
    # Root that lhotse manifests' and AQA .jsonl audio paths must lie under (None: each manifest's folder);
    # --data-root overrides it.
    data_root: str | None = None
    # The stage fails (exit 1, the flow stops) when fewer than this share of the inputs is accepted, and
    # always when none is; the quarantine rows are written either way.
    min_accepted_fraction: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _bounds(self) -> IngestConfig:
        if self.min_duration >= self.max_duration:
            raise ValueError("min_duration must be below max_duration")
        return self


class SeedsConfig(Section):
    whisper_batch_size: int = Field(16, ge=1)
    # Whisper runtime: hf (transformers; any model, hub names too) | ct2 (CTranslate2 float32; needs
    # `<models.whisper>-ct2`, which `desta setup` links for the embedded model; docs/seeds.md has the
    # measured speed and WER of each). hf keeps params without the key working as before.
    engine: Literal["hf", "ct2"] = "hf"
    # Clips per dataset that Whisper also transcribes when the corpus gives a transcript (WER report).
    report_clips_per_dataset: int = Field(64, ge=0)
    shard_rows: int = Field(2000, ge=1)
    # Held-out split (by speaker and transcript groups); the fraction is evaluate.heldout_fraction.
    split_seed: int = 0
    # Bucket edges (4, ascending) map a measurement to the paper's five words, e.g. Very low … Very high;
    # None = fitted to each run's speech clips (equal steps over their range; report.json records them).
    # Fix them to keep a word's meaning across retrains on changing corpora.
    pitch_hz_edges: list[float] | None = None  # median F0
    volume_dbfs_edges: list[float] | None = None  # voiced RMS
    speed_sps_edges: list[float] | None = None  # syllables per voiced second
    # Speech clips for the learnability probe (report.json `learnability`; components/seeds/learnability.py):
    # up to a third held out. 0 = no probe. Each clip runs the encoder once (cached for training).
    probe_clips: int = Field(0, ge=0)
    # The text a training row gives the model beside a clip's audio (seed rows' `model_text`): the corpus's
    # transcript, or Whisper's of every clip, as evaluation and serving give it (docs/seeds.md).
    model_text: Literal["corpus", "whisper"] = "corpus"

    @field_validator("pitch_hz_edges", "volume_dbfs_edges", "speed_sps_edges")
    @classmethod
    def _five_words(cls, edges: list[float] | None) -> list[float] | None:
        if edges is not None and (len(edges) != 4 or sorted(edges) != edges):
            raise ValueError("needs 4 ascending edges (for five words), or null to fit them to the corpus")
        return edges


class LabelConfig(Section):
    """Self-generated labelling (components/label): decoding, retries, backends, shards, cache."""

    backend: Literal["hf", "ct2", "vllm", "openai"] = "hf"
    instructions_per_clip: int = Field(1, ge=1)
    # Instruction pool (JSONL); None = the versioned pool shipped in components/label/data.
    instructions: str | None = None
    # Instruction kinds to draw from (e.g. [describe, gender, speed]); None = every kind in the pool.
    kinds: list[str] | None = None
    # Kind -> that many more instructions of the kind per clip it fits, after instructions_per_clip:
    # more draws where the filters keep few answers (e.g. {volume: 2}); any kind of the pool.
    more_draws: dict[str, PositiveInt] = {}
    # Seed rows whose `split` is not listed are skipped (held-out clips never become targets);
    # rows without a `split` field are always labelled.
    splits: list[str] = ["train"]
    batch_size: int = Field(32, ge=1)
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0)  # 0 = greedy
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = 0
    max_retries: int = Field(2, ge=0)
    retry_temperature: float = Field(0.7, gt=0)  # filtered rows are re-sampled with a derived seed
    # An answer that hits max_new_tokens keeps its complete sentences; False = regenerate it.
    trim_truncated: bool = True
    # Keep only the sentences that state the voice (gender, pitch, volume, speed) as the seed does;
    # an attribute instruction's answer must state its attribute (components/label/attributes.py).
    focus: bool = False
    # At most this many clips per speaker are labelled (hash order): one dominant voice would
    # otherwise teach the connector a constant. None = no cap.
    max_clips_per_speaker: int | None = Field(None, ge=1)
    # Each kept answer to a gender/pitch/speed/volume question also becomes a choice-format row whose
    # response is the option it states, options shuffled (components/label/choices.py, #7).
    choice_rows: bool = False
    # With choice_rows: also one for each other attribute a clip's kept answers state as the seed does.
    choice_stated: bool = False
    # With choice_rows: a "what was said" choice row for every labelled clip with a transcript (no generation).
    choice_said: bool = False
    precision: Literal["bf16", "fp32"] = "bf16"  # hf: bf16 autocast over fp32 weights; vllm: dtype
    threads: int | None = Field(None, ge=1)  # hf/ct2: threads while generating; None = the engine's default
    # ct2 (CTranslate2 on the CPU): float32 = the hf backend's fp32 text; int8 quantises at load time
    compute_type: Literal["float32", "int8", "int8_float32"] = "float32"
    shard_rows: int = Field(256, ge=1)  # output rows per shard = one independent unit of work
    cache_dir: str | None = None  # response cache; None = <out>/cache
    openai_base_url: str | None = None
    concurrency: int = Field(4, ge=1)
    request_timeout: float = Field(120.0, gt=0)
    request_attempts: int = Field(5, ge=1)


class LoraConfig(Section):
    enabled: bool = False
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj"]


class ModelConfig(Section):
    """The DeSTA connector: which encoder layers to tap and the Q-Former's shape."""

    # Indices into the encoder's hidden states: 0 = conv + position embeddings, k = output of
    # encoder layer k (1-based; the last one taken before the final LayerNorm, as DeSTA taps it).
    encoder_layers: list[int]
    prompt_size: int = Field(64, ge=1)
    qformer_layers: int = Field(2, ge=1)
    qformer_heads: int = Field(8, ge=1)
    # BERT-style layer: FFN width (BertConfig's default 3072, as the official connector) and dropout.
    qformer_intermediate: int = Field(3072, ge=1)
    qformer_dropout: float = Field(0.1, ge=0, lt=1)
    # Transcript tokens placed after the audio vectors are capped (the official trainer uses 100).
    max_transcript_tokens: int = Field(100, ge=0)
    # Cross-attention reads only each clip's own encoder positions, not Whisper's 30 s padding.
    # False = the official connector (reads all 1500); a tiny connector needs True (issue #7).
    mask_padding: bool = False
    # Standardise each tapped feature with its mean/std over `state_stats_clips` training clips
    # (saved with the model). Whisper tiny.en's taps carry a shared offset as large as their variation
    # and feature scales 4-12x apart; on raw states a small Q-Former did not learn gender from 120
    # clips in 100 steps, standardised it did in 75 (measured, issue #7).
    # False = the official connector (raw states).
    normalize_states: bool = False
    state_stats_clips: int = Field(64, ge=1)
    lora: LoraConfig = LoraConfig()

    @model_validator(mode="after")
    def _layers(self) -> ModelConfig:
        if not self.encoder_layers or min(self.encoder_layers) < 0:
            raise ValueError("encoder_layers must be a non-empty list of indices >= 0")
        if len(set(self.encoder_layers)) != len(self.encoder_layers):
            raise ValueError("encoder_layers must not repeat an index")
        return self


class TrainConfig(Section):
    ranks: int = Field(2, ge=1)
    device: Literal["cpu", "cuda"] = "cpu"
    deepspeed_config: str = "infra/deepspeed/zero2.json"
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(0, ge=0)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    grad_clip: float = Field(1.0, gt=0)
    max_length: int = Field(300, ge=8)
    checkpoint_every: int = Field(100, ge=1)
    seed: int = 0
    # Checkpoints kept on disk (the newest N; resume uses the newest).
    keep_checkpoints: int = Field(2, ge=1)
    # MLflow step metrics every N optimizer steps (rank 0 only).
    log_every: int = Field(1, ge=1)
    # Cache the frozen encoder's tapped hidden states per clip on disk (content-addressed), so
    # epochs and resumed runs skip the encoder. Worth it for small corpora; off for the paper's 5M clips.
    encoder_cache: bool = False
    # The LLM's attention kernel while training: `auto` (torch picks; flash on CPU and GPU) or `math`
    # (SDPA's reference kernel, fp32 inside on CPU). On CPU in bf16, flash's backward is the slowest op of
    # a step and its gradients stray from fp32's; math is faster and matches fp32 (docs/train.md).
    attention_kernel: Literal["auto", "math"] = "auto"
    reuse_frozen_head: bool = False  # rows' common text before the audio: KV computed once (a frozen LLM only)
    # A clip's rows share a micro-batch and run their common prefix (its audio and transcript) once:
    # every row's loss as unpacked; the batches group rows by clip (docs/train.md).
    pack_clip_rows: bool = False
    # token: every response token weighs the same (long open answers dominate); row: every row weighs the same,
    # so a one-word choice row teaches as much as a 40-token answer (docs/train.md).
    loss_average: Literal["token", "row"] = "token"
    # Multi-node: a DeepSpeed hostfile (`host slots=N` lines); null = one node with `ranks` processes.
    hostfile: str | None = None


class EvaluateConfig(Section):
    primary_metric: str = "mcq_accuracy"
    promote_margin: float = Field(0.0, ge=0)
    forgetting_bound: float = 0.2
    heldout_fraction: float = Field(0.2, gt=0, lt=1)
    max_questions: int | None = Field(None, ge=1)  # cap on held-out MCQ questions (None: all)
    batch_size: int = Field(16, ge=1)


class TrackingConfig(Section):
    experiment: str = "desta"
    registered_model: str = "desta-audio"


class Profile(Section):
    models: ModelsConfig
    data: DataConfig = DataConfig()
    ingest: IngestConfig = IngestConfig()
    seeds: SeedsConfig = SeedsConfig()
    label: LabelConfig = LabelConfig()
    model: ModelConfig
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    tracking: TrackingConfig = TrackingConfig()


class Params(Section):
    """The whole params.yaml: the active profile's name and every profile."""

    profile: str
    profiles: dict[str, Profile]

    @model_validator(mode="after")
    def _active_exists(self) -> Params:
        if self.profile not in self.profiles:
            raise ValueError(f"profile {self.profile!r} is not defined (have: {sorted(self.profiles)})")
        return self

    @property
    def active(self) -> Profile:
        return self.profiles[self.profile]


def _format_error(err: ValidationError, source: Path) -> str:
    lines = [f"invalid config in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def parse_params(raw: dict, source: Path = Path("params.yaml")) -> Params:
    """Validate a params mapping: `profile` plus one top-level block per profile."""
    if not isinstance(raw, dict) or "profile" not in raw:
        raise ConfigError(f"invalid config in {source}: expected a mapping with a 'profile' key")
    raw = dict(raw)
    profile = raw.pop("profile")
    try:
        return Params(profile=profile, profiles=raw)
    except ValidationError as err:
        # pydantic prefixes 'profiles.'; users edit top-level blocks, so name keys as in the file.
        text = _format_error(err, source).replace("  profiles.", "  ")
        raise ConfigError(text) from None


def default_params_path() -> Path:
    return Path(os.environ.get(PARAMS_ENV, "params.yaml"))


def load_params(path: Path | None = None) -> Params:
    """Load and validate params.yaml; DESTA_PROFILE overrides the active profile."""
    path = path or default_params_path()
    if not path.is_file():
        raise ConfigError(f"params file not found: {path} (run from the repository root or set {PARAMS_ENV})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML in {path}: {err}") from None
    if isinstance(raw, dict) and os.environ.get(PROFILE_ENV):
        raw["profile"] = os.environ[PROFILE_ENV]
    return parse_params(raw, path)


def load_profile(path: Path | None = None) -> Profile:
    """The active profile of params.yaml."""
    return load_params(path).active


def apply_overrides(path: Path, overrides: list[str]) -> None:
    """Set `a.b.c=value` keys in params.yaml (comments kept), like `dvc exp run -S`.

    Values are parsed as YAML. The result is validated before it is written: a bad key or value
    leaves the file untouched and raises ConfigError naming it.
    """
    import io

    from ruamel.yaml import YAML

    rt = YAML()
    doc = rt.load(path.read_text())
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key.path=value")
        node = doc
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"override {key}: unknown key {part!r}")
            node = node[part]
        if not isinstance(node, dict) or leaf not in node:
            raise ConfigError(f"override {key}: unknown key {leaf!r}")
        node[leaf] = yaml.safe_load(value)
    buf = io.StringIO()
    rt.dump(doc, buf)
    parse_params(yaml.safe_load(buf.getvalue()), path)  # raises ConfigError naming the key
    from components.atomic import atomic_write_text

    atomic_write_text(path, buf.getvalue())
