"""Shipping adapters from the web: merged into their base (a background merge, then a download), and
loaded into a served teacher (vLLM's runtime LoRA loading).

Rules that matter:
- one merge at a time per adapter: asking again while one is queued or running returns that one;
- a finished merge is reused while its *stamp* is the same (the adapter's files, the base model, its
  chat template); after a change the adapter is merged again into a new folder, and the folders of its
  older merges are deleted once the new one is complete;
- a merge's folder is ``DATA_DIR/merged/<id>-<created>-<model>-v<version>`` (a reset database never
  reuses another merge's folder), written whole or not at all by the core (``training/core/merge.py``);
- a running merge sends heartbeats; one silent for ``TEACHLOOP_JOB_STALE_AFTER_S`` lost its worker
  (killed, out of memory) and is failed with that reason when anyone next looks (the Adapters page, a
  new request). It is never re-run by itself: a merge that kills its worker would kill the next one;
- an adapter loads only into an OpenAI-compatible model whose ``adapters_of`` is the adapter's model
  (the explicit "this server serves that base" of the registry), under the name
  ``<model>-v<version>``; its folder is sent as the server sees it (``TEACHLOOP_VLLM_ADAPTER_DIR``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import threading
import zipfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from training.core.errors import first_line
from training.core.llm import LLMError
from training.core.llm.openai_compat import AdapterLoadError, OpenAICompatLLM
from training.core.merge import MergeError, merge_adapter, read_adapter
from training.models import Adapter, AdapterMerge, LanguageModel
from training.recovery import claim, keep_alive, stale_cutoff

logger = logging.getLogger(__name__)

MERGED_DIRNAME = "merged"
ZIP_CHUNK = 1 << 20  # bytes read (and sent) at a time: the download never holds a whole file


# --- merging ------------------------------------------------------------------------------------


def merges_root() -> Path:
    return Path(settings.TEACHLOOP_DATA_DIR) / MERGED_DIRNAME


def merge_dir(merge: AdapterMerge) -> Path:
    adapter = merge.adapter
    name = f"{merge.pk}-{merge.created_at:%Y%m%dT%H%M%S%f}-{adapter.base_model.name}-v{adapter.version}"
    return merges_root() / name


def adapter_merge_stamp(*, adapter: Adapter) -> str:
    """What a merge of ``adapter`` would be made of, hashed: its folder and the size and time of each
    of its files, the base model's backend and source, and the chat template written with it.
    MergeError when the folder is not a peft adapter (gone, emptied)."""
    folder = read_adapter(adapter.path)
    model = adapter.base_model
    digest = hashlib.sha256()
    for part in (str(folder.path.resolve()), model.backend, model.source, model.chat_template):
        digest.update(part.encode() + b"\0")
    for path in sorted(p for p in folder.path.iterdir() if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def adapter_merge_request(*, adapter: Adapter, user=None) -> tuple[AdapterMerge, str]:
    """The merge that answers a request to merge ``adapter``, and what happened: ``"queued"`` (a new
    merge, sent to a worker once the transaction commits), ``"active"`` (one is already queued or
    running) or ``"reused"`` (an unchanged adapter's finished merge). ValidationError with one line
    when it cannot be merged (a model served over HTTP, a folder that is not a peft adapter)."""
    if adapter.base_model.backend == LanguageModel.Backend.OPENAI:
        raise ValidationError(
            f"{adapter.base_model.name} is served over HTTP; only a local model's adapter can be merged"
        )
    try:
        stamp = adapter_merge_stamp(adapter=adapter)
    except MergeError as exc:
        raise ValidationError(f"{adapter}: {exc}") from exc
    adapter_merges_recover()
    with transaction.atomic():
        # Locks the adapter row: two clicks at once queue one merge, not two.
        Adapter.objects.select_for_update().get(pk=adapter.pk)
        active = adapter.merges.filter(status__in=AdapterMerge.ACTIVE).first()
        if active is not None:
            return active, "active"
        done = adapter.merges.filter(status=AdapterMerge.Status.SUCCEEDED, stamp=stamp).first()
        if done is not None and (Path(done.out_dir) / "config.json").is_file():
            return done, "reused"
        merge = AdapterMerge.objects.create(adapter=adapter, stamp=stamp, created_by=user)
        merge.out_dir = str(merge_dir(merge))
        merge.save(update_fields=["out_dir"])
        transaction.on_commit(lambda: adapter_merge_enqueue(merge=merge))
    return merge, "queued"


def adapter_merge_enqueue(*, merge: AdapterMerge) -> None:
    from training.tasks import run_adapter_merge

    result = run_adapter_merge.enqueue(merge.pk)
    AdapterMerge.objects.filter(pk=merge.pk).update(task_id=str(result.id)[:64])


def adapter_merges_recover(*, stale_after_s: float | None = None) -> list[int]:
    """Fail running merges whose worker stopped sending heartbeats (see the module docstring)."""
    cutoff = stale_cutoff(stale_after_s)
    failed = []
    stale = AdapterMerge.objects.filter(status=AdapterMerge.Status.RUNNING, heartbeat_at__lt=cutoff)
    for merge_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            merge = AdapterMerge.objects.select_for_update().get(pk=merge_id)
            if merge.status != AdapterMerge.Status.RUNNING or merge.heartbeat_at >= cutoff:
                continue
            merge.status, merge.lease, merge.finished_at = AdapterMerge.Status.FAILED, "", timezone.now()
            merge.error = (
                f"worker {merge.worker} stopped during the merge (no heartbeat since "
                f"{merge.heartbeat_at:%H:%M:%S}; killed, or out of memory?). Merge again to retry."
            )
            merge.save(update_fields=["status", "lease", "finished_at", "error"])
            failed.append(merge.pk)
    return failed


def adapter_merge_run(*, merge_id: int) -> str:
    """Claim and run a queued merge (the worker's task); returns its final status ("skipped" when it
    was not queued). Expected failures are stored on the merge as one line; nothing raises."""
    claimed = claim(AdapterMerge, merge_id)
    if claimed is None:
        return "skipped"
    merge, lease = claimed
    stop = threading.Event()
    heart = threading.Thread(
        target=keep_alive,
        args=(AdapterMerge.objects.filter(pk=merge.pk, lease=lease),),
        kwargs={"every_s": settings.TEACHLOOP_JOB_HEARTBEAT_S, "stop": stop, "what": f"merge {merge.pk}"},
        daemon=True,
        name=f"heartbeat-merge-{merge.pk}",
    )
    heart.start()
    out = Path(merge.out_dir)
    try:
        written = _merge(merge)
    except (MergeError, ValidationError) as exc:
        error = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        return _finish(merge, lease, status=AdapterMerge.Status.FAILED, error=error)
    except Exception as exc:  # anything else: one line on the page, the trace in the log
        logger.exception("merge %s crashed", merge.pk)
        error = f"{type(exc).__name__}: {first_line(exc)}"
        return _finish(merge, lease, status=AdapterMerge.Status.FAILED, error=error)
    finally:
        stop.set()
    size = sum(p.stat().st_size for p in written.rglob("*") if p.is_file())
    status = _finish(merge, lease, status=AdapterMerge.Status.SUCCEEDED, size=size)
    if status == AdapterMerge.Status.SUCCEEDED:
        _delete_older_folders(merge)
    else:  # another attempt owns the merge now (it was taken for lost): this folder is nobody's
        shutil.rmtree(out, ignore_errors=True)
    return status


def _merge(merge: AdapterMerge) -> Path:
    from training.jobs import training_base_path

    adapter = merge.adapter
    model = adapter.base_model
    out = Path(merge.out_dir)
    if out.exists() or out.is_symlink():  # never ours: each merge has its own folder
        raise MergeError(f"{out} already exists (left by an earlier database?); move it away and merge again")
    try:
        base = training_base_path(model=model)  # a GGUF model: its safetensors copy (made once)
    except OSError as exc:
        raise MergeError(f"{model.name}: cannot read {model.source}: {first_line(exc)}") from exc
    return merge_adapter(
        adapter.path,
        base,
        merge.out_dir,
        # The row records its model: the shapes are checked whatever the adapter's config names.
        check_base=False,
        chat_template=model.chat_template,
    )


def _finish(merge: AdapterMerge, lease: str, *, status: str, error: str = "", size: int | None = None) -> str:
    with transaction.atomic():
        row = AdapterMerge.objects.select_for_update().filter(pk=merge.pk).first()
        if row is None or row.lease != lease:  # deleted with its adapter, or taken for lost
            return "lost"
        row.status, row.error, row.size_bytes = status, error[:2000], size
        row.lease, row.finished_at = "", timezone.now()
        row.save(update_fields=["status", "error", "size_bytes", "lease", "finished_at"])
    return status


def _delete_older_folders(merge: AdapterMerge) -> None:
    """The folders of the adapter's earlier merges, now that ``merge`` replaces them (only folders
    under DATA_DIR/merged are ever deleted)."""
    root = merges_root().resolve()
    older = AdapterMerge.objects.filter(adapter_id=merge.adapter_id, pk__lt=merge.pk).exclude(out_dir="")
    for old in older:
        folder = Path(old.out_dir)
        if folder.is_dir() and root in folder.resolve().parents:
            shutil.rmtree(folder, ignore_errors=True)
    older.filter(status=AdapterMerge.Status.SUCCEEDED).update(
        error=f"replaced by merge {merge.pk}", out_dir=""
    )


def merged_zip(folder: Path, name: str) -> Iterator[bytes]:
    """``folder`` as a zip (files under ``name/``), produced piece by piece: at most about one
    ``ZIP_CHUNK`` is held at a time, so a model of many GB streams in constant memory."""
    sink = _Sink()
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in files:
            arcname = str(PurePosixPath(name) / path.relative_to(folder).as_posix())
            big = path.stat().st_size >= zipfile.ZIP64_LIMIT
            with path.open("rb") as source, archive.open(arcname, "w", force_zip64=big) as target:
                while chunk := source.read(ZIP_CHUNK):
                    target.write(chunk)
                    yield from sink.take()
            yield from sink.take()
    yield from sink.take()


async def in_thread(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    """``pieces`` as an async iterator, each one made in a worker thread. Under ASGI (daphne) Django
    reads a *sync* streaming body whole into a list before sending a byte; this one it sends as made."""
    done = object()
    try:
        while (piece := await sync_to_async(next, thread_sensitive=False)(pieces, done)) is not done:
            yield piece
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:  # the client went away: close the files being read
            await sync_to_async(close, thread_sensitive=False)()


class _Sink(io.RawIOBase):
    """A write-only, unseekable file that keeps what was written until :meth:`take` (zipfile writes
    data descriptors to such a file instead of seeking back)."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> list[bytes]:
        """What was written since the last call, as one piece (none when nothing was)."""
        data, self._parts = b"".join(self._parts), []
        return [data] if data else []


# --- loading into a served model -----------------------------------------------------------------


def served_lora_name(adapter: Adapter) -> str:
    """The model name an adapter is served under: ``<model>-v<version>``."""
    return f"{adapter.base_model.name}-v{adapter.version}"


def served_adapter_path(path: Path | str) -> str:
    """``path`` (a folder under TEACHLOOP_DATA_DIR) as the served model's server sees it: under
    TEACHLOOP_VLLM_ADAPTER_DIR when that is set, else unchanged. ValidationError for a folder outside
    the data folder when it is set (the server cannot see it)."""
    mount = settings.TEACHLOOP_VLLM_ADAPTER_DIR
    if not mount:
        return str(path)
    data = Path(settings.TEACHLOOP_DATA_DIR).resolve()
    try:
        inside = Path(path).resolve().relative_to(data)
    except ValueError:
        raise ValidationError(
            f"{path} is outside TEACHLOOP_DATA_DIR ({data}), the only folder the server sees "
            f"(at {mount}, TEACHLOOP_VLLM_ADAPTER_DIR)"
        ) from None
    return str(PurePosixPath(mount) / inside.as_posix())


def adapter_serve_load(*, adapter: Adapter, served: LanguageModel) -> tuple[str, str]:
    """Load ``adapter`` into the server behind ``served`` (vLLM's runtime LoRA loading). Returns the
    model name it is now served under and the server's reply; ValidationError with one line when the
    adapter does not belong there, its folder is gone, or the server says no."""
    if served.backend != LanguageModel.Backend.OPENAI:
        raise ValidationError(f"{served.name} is not an OpenAI-compatible server")
    if served.adapters_of_id != adapter.base_model_id:
        serves = served.adapters_of.name if served.adapters_of else "no registered model"
        raise ValidationError(
            f"{served.name} loads adapters of {serves}, not of {adapter.base_model.name} "
            "(its “loads adapters of” in the admin)"
        )
    try:
        folder = read_adapter(adapter.path)
    except MergeError as exc:
        raise ValidationError(f"{adapter}: {exc}") from exc
    path = served_adapter_path(folder.path)
    name = served_lora_name(adapter)
    llm = OpenAICompatLLM(served.to_spec())
    try:
        reply = llm.load_lora_adapter(name, path)
    except LLMError as exc:
        hint = ""
        if isinstance(exc, AdapterLoadError) and exc.reason == "not_found":
            mount = settings.TEACHLOOP_VLLM_ADAPTER_DIR
            hint = (
                f" (TEACHLOOP_VLLM_ADAPTER_DIR is {mount}: is the data volume mounted there?)"
                if mount
                else " (TEACHLOOP_VLLM_ADAPTER_DIR is not set, so the server was sent this site's own "
                "path: set it to where the server sees TEACHLOOP_DATA_DIR)"
            )
        raise ValidationError(f"{exc}{hint}") from exc
    finally:
        llm.close()
    return name, reply


def register_command(*, name: str, served: LanguageModel) -> str:
    """The command that registers a loaded adapter as a teacher (the served model's URL and key)."""
    key = f" --api-key-env {served.api_key_env}" if served.api_key_env else ""
    return (
        f"python manage.py register_model {name} --backend openai --base-url {served.base_url} "
        f"--source {name}{key} --teacher --try"
    )


# --- the Adapters page ---------------------------------------------------------------------------


@dataclass
class AdapterRow:
    adapter: Adapter
    merge: AdapterMerge | None = None
    servers: list[LanguageModel] = field(default_factory=list)


def adapter_rows(adapters: Iterable[Adapter]) -> list[AdapterRow]:
    """Each adapter with its latest merge and the served models it can be loaded into."""
    adapter_merges_recover()
    rows = [AdapterRow(adapter) for adapter in adapters]
    latest: dict[int, AdapterMerge] = {}
    for merge in AdapterMerge.objects.filter(adapter__in=[r.adapter.pk for r in rows]):
        latest.setdefault(merge.adapter_id, merge)  # newest first (Meta.ordering)
    servers: dict[int, list[LanguageModel]] = {}
    for model in LanguageModel.objects.filter(
        backend=LanguageModel.Backend.OPENAI, enabled=True, adapters_of__isnull=False
    ):
        servers.setdefault(model.adapters_of_id, []).append(model)
    for row in rows:
        row.merge = latest.get(row.adapter.pk)
        row.servers = servers.get(row.adapter.base_model_id, [])
    return rows
