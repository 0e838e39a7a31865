from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from training.core.llm import GenerationParams, ModelSpec


class LanguageModel(models.Model):
    """A teacher and/or student model: where it lives, how to talk to it, how to sample."""

    class Backend(models.TextChoices):
        TRANSFORMERS = "transformers", "transformers (Hugging Face id or local folder)"
        GGUF = "gguf", "GGUF file (loaded through transformers)"
        OPENAI = "openai", "OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp…)"

    name = models.SlugField(max_length=100, unique=True, help_text="Short unique name, e.g. smollm2-135m.")
    is_teacher = models.BooleanField("teacher", default=False)
    is_student = models.BooleanField("student", default=False)
    is_default_teacher = models.BooleanField(default=False)
    is_default_student = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)

    backend = models.CharField(max_length=20, choices=Backend.choices, default=Backend.TRANSFORMERS)
    source = models.CharField(
        max_length=500,
        help_text="transformers: Hugging Face id or local folder · gguf: path to the .gguf file · "
        "openai: the model name the server serves.",
    )
    # Not URLField: Django's URL validator rejects dotless hosts such as "gpu-box" or a compose
    # service name ("vllm"), which is where OpenAI-compatible servers usually live.
    base_url = models.CharField(
        max_length=500,
        blank=True,
        validators=[
            RegexValidator(
                r"^https?://[^\s/?#]+(/[^\s]*)?$", "Give an http(s) URL such as http://vllm:8000/v1."
            )
        ],
        help_text="openai only, e.g. http://127.0.0.1:8001/v1",
    )
    api_key_env = models.CharField(
        "API key environment variable",
        max_length=100,
        blank=True,
        validators=[RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "Use a variable name, e.g. OPENAI_API_KEY.")],
        help_text="openai only: the NAME of the environment variable holding the key (never the key).",
    )
    chat_template = models.TextField(blank=True, help_text="Jinja chat template; empty = the model's own.")
    token_limit_field = models.CharField(
        "reply length field",
        max_length=30,
        choices=[
            ("max_tokens", "max_tokens (vLLM, SGLang, Ollama, llama.cpp, most servers)"),
            ("max_completion_tokens", "max_completion_tokens (OpenAI's newest models)"),
        ],
        default="max_tokens",
        db_default="max_tokens",  # rows written by code (or migrations) older than the field
        help_text="openai only: the request field that limits the reply's length.",
    )
    send_sampling = models.BooleanField(
        "send temperature and top_p",
        default=True,
        db_default=True,
        help_text="openai only: off for models that accept only their own sampling (some of OpenAI's "
        "newest refuse temperature 0).",
    )
    adapters_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="adapter_servers",
        limit_choices_to={"backend__in": ["transformers", "gguf"]},
        verbose_name="loads adapters of",
        help_text="openai only: the registered local model whose base model this server serves with "
        "runtime LoRA loading on (vLLM: --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True). That "
        "model's adapters get a “Load into …” button on the Adapters page. Empty: none.",
    )

    temperature = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(5.0)], help_text="0 = greedy."
    )
    top_p = models.FloatField(default=1.0, validators=[MinValueValidator(0.01), MaxValueValidator(1.0)])
    max_new_tokens = models.PositiveIntegerField(
        default=256, validators=[MinValueValidator(1), MaxValueValidator(32768)]
    )

    last_try_output = models.TextField(blank=True)
    last_try_error = models.TextField(blank=True)
    last_tried_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default_teacher"],
                condition=Q(is_default_teacher=True),
                name="one_default_teacher",
            ),
            models.UniqueConstraint(
                fields=["is_default_student"],
                condition=Q(is_default_student=True),
                name="one_default_student",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def roles(self) -> list[str]:
        return [role for role, on in (("teacher", self.is_teacher), ("student", self.is_student)) if on]

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not (self.is_teacher or self.is_student):
            errors["is_teacher"] = "Give the model at least one role: teacher or student."
        if self.is_default_teacher and not self.is_teacher:
            errors["is_default_teacher"] = "Only a teacher can be the default teacher."
        if self.is_default_student and not self.is_student:
            errors["is_default_student"] = "Only a student can be the default student."
        if self.backend == self.Backend.OPENAI:
            if not self.base_url:
                errors["base_url"] = "An OpenAI-compatible model needs the server's base URL."
        else:
            if self.base_url:
                errors["base_url"] = "Only the openai backend uses a base URL."
        if self.adapters_of_id is not None:
            if self.backend != self.Backend.OPENAI:
                errors["adapters_of"] = "Only an OpenAI-compatible server loads another model's adapters."
            elif self.adapters_of.backend == self.Backend.OPENAI:
                errors["adapters_of"] = "Choose a local model (transformers or GGUF): adapters train there."
        if self.backend == self.Backend.GGUF and not self.source.lower().endswith(".gguf"):
            errors["source"] = "A GGUF model's source is the path to its .gguf file."
        if errors:
            raise ValidationError(errors)

    def generation_params(self) -> GenerationParams:
        return GenerationParams(
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p
        )

    def to_spec(self) -> ModelSpec:
        return ModelSpec(
            name=self.name,
            backend=self.backend,  # type: ignore[arg-type]
            source=self.source,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
            chat_template=self.chat_template,
            defaults=self.generation_params(),
            token_limit_field=self.token_limit_field,
            send_sampling=self.send_sampling,
        )


class TrainingDataset(models.Model):
    """Training records frozen at creation: later edits to feedback never change a job's data.

    Records use the chat format of TRL and OpenAI fine-tuning files (``messages``) for SFT,
    ``prompt``/``chosen``/``rejected`` for DPO and ``prompt``/``completion``/``label`` for KTO.
    """

    class Method(models.TextChoices):
        SFT = "sft", "SFT (chat records)"
        DPO = "dpo", "DPO (preference pairs)"
        KTO = "kto", "KTO (thumbs up/down)"

    name = models.CharField(max_length=200)
    method = models.CharField(max_length=10, choices=Method.choices, default=Method.SFT)
    records = models.JSONField(default=list)
    record_count = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64, editable=False)
    source = models.CharField(max_length=200, blank=True, help_text="upload file name, or what built it")
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.record_count} {self.method} records)"


class Adapter(models.Model):
    """A trained LoRA adapter (a standard PEFT folder), versioned per base model."""

    base_model = models.ForeignKey(LanguageModel, on_delete=models.PROTECT, related_name="adapters")
    version = models.PositiveIntegerField()
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    path = models.CharField(max_length=1000)
    method = models.CharField(max_length=10, choices=TrainingDataset.Method.choices)
    config = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["base_model__name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["base_model", "version"], name="adapter_version_per_model")
        ]

    def __str__(self) -> str:
        return f"{self.base_model.name} v{self.version}"

    @property
    def lineage(self) -> list[Adapter]:
        """This adapter and its ancestors, newest first."""
        chain, node, seen = [], self, set()
        while node is not None and node.pk not in seen:
            seen.add(node.pk)
            chain.append(node)
            node = node.parent
        return chain


class TrainingJob(models.Model):
    """One fine-tuning run of a LoRA adapter, executed by a background worker."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    base_model = models.ForeignKey(LanguageModel, on_delete=models.PROTECT, related_name="training_jobs")
    parent_adapter = models.ForeignKey(
        Adapter, null=True, blank=True, on_delete=models.PROTECT, related_name="child_jobs"
    )
    dataset = models.ForeignKey(TrainingDataset, on_delete=models.PROTECT, related_name="jobs")
    method = models.CharField(max_length=10, choices=TrainingDataset.Method.choices)
    config = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    cancel_requested = models.BooleanField(default=False)

    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    eval_loss = models.FloatField(null=True, blank=True)
    tokens_per_s = models.FloatField(null=True, blank=True)
    eta_s = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    events = models.JSONField(default=list, help_text="a short log of what happened, newest last")

    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker running it")
    lease = models.CharField(max_length=64, blank=True, help_text="token of the attempt that owns the job")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)

    adapter = models.OneToOneField(
        Adapter, null=True, blank=True, on_delete=models.SET_NULL, related_name="job"
    )
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.method} {self.base_model.name}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def progress_percent(self) -> int:
        return int(100 * self.step / self.total_steps) if self.total_steps else 0


class TrainingMetric(models.Model):
    """One logged training step, so a chart can be redrawn at any time."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    loss = models.FloatField(null=True)
    learning_rate = models.FloatField(null=True)
    grad_norm = models.FloatField(null=True)
    tokens_per_s = models.FloatField(null=True)
    eval_loss = models.FloatField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "step"]
        constraints = [models.UniqueConstraint(fields=["job", "step"], name="one_metric_per_job_step")]

    def __str__(self) -> str:
        return f"job {self.job_id} step {self.step}"


class AdapterMerge(models.Model):
    """One merge of an adapter into its base model (a plain transformers folder), run by a worker.

    The rules (one at a time per adapter, reuse while unchanged, lost workers) are in
    ``training/shipping.py``; the merge itself in ``training/core/merge.py``.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    adapter = models.ForeignKey(Adapter, on_delete=models.CASCADE, related_name="merges")
    status = models.CharField(
        max_length=10,
        choices=Status.choices,
        default=Status.QUEUED,
        db_default=Status.QUEUED,
        db_index=True,
    )
    stamp = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",
        help_text="what was merged (the adapter's files, the base, the chat template), hashed: "
        "a finished merge is reused while it is the same",
    )
    out_dir = models.CharField("folder", max_length=1000, blank=True, default="", db_default="")
    size_bytes = models.BigIntegerField("size (bytes)", null=True, blank=True)
    error = models.TextField(blank=True, default="", db_default="")

    attempts = models.PositiveIntegerField(default=0, db_default=0)
    worker = models.CharField(
        max_length=200, blank=True, default="", db_default="", help_text="host:pid of the worker running it"
    )
    lease = models.CharField(
        max_length=64, blank=True, default="", db_default="", help_text="token of the attempt that owns it"
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True, default="", db_default="")

    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"merge {self.pk} of {self.adapter} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE
