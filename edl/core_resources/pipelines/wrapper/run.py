"""One run of a pipeline: inputs read, code run, outputs checked and committed, lineage kept.

The wrapper does all the I/O, the pipeline's code none of it (DESIGN §4):

1. the inputs' and outputs' dataset records are read, and the tier rule checked (an output is at
   least as protected as its most protected input);
2. each input is planned as of its update (the one given with `--as-of ALIAS=UPDATE`, else the
   newest complete one), so that lineage names exactly what was read, and read with `lake.read`;
3. one pending update per output is allocated (so a run that fails from here on leaves failed,
   invisible updates that say why, never nothing);
4. the code runs: `run(spark, inputs, params)` from `pipeline.py` (its folder importable), or each
   output's `<alias>.sql` over the inputs as temporary views; what it returns is checked (exactly
   the outputs' aliases, each a DataFrame);
5. each output is written to its update's staging folder and its checks run on what was
   written; only when every output passed are they committed, one after another, each with the
   run's lineage. Any error before that fails every output update with the reason and removes
   its files.

The run emits an OpenLineage START event before step 3 and COMPLETE or FAIL at the end
(`edl.utils.lineage`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edl.core_resources.pipelines.wrapper.checks import run_checks
from edl.core_resources.pipelines.wrapper.output import OutputWriter, StagedOutput
from edl.errors import EdlError
from edl.pipeline_config import PYSPARK_FILE, PipelineConfig, code_hash
from edl.utils import lake
from edl.utils.context import LakeContext
from edl.utils.lineage import (
    COMPLETE,
    FAIL,
    START,
    DatasetVersion,
    lineage_record,
    post_event,
    run_event,
)
from edl.utils.metadata import DatasetRecord
from edl.utils.tier_policy import check_output_tiers
from edl.utils.updates import UpdateRecord, format_update_id

log = logging.getLogger(__name__)


class PipelineCodeError(EdlError):
    """The pipeline's own code raised, or returned something other than its outputs."""


@dataclass(frozen=True)
class RunRequest:
    config: PipelineConfig
    as_of: dict[str, str] = field(default_factory=dict)   # input alias → update id
    job_id: str = ""
    requested_by: str = ""
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class RunResult:
    run_id: str
    inputs: tuple[DatasetVersion, ...]
    outputs: dict[str, UpdateRecord]              # alias → the complete update
    events: tuple[dict[str, Any], ...]            # the run's OpenLineage events


class PipelineRunError(EdlError):
    """A run that failed: the reason, and what it left behind (failed updates, events)."""

    def __init__(self, message: str, hint: str | None = None, *,
                 events: tuple[dict[str, Any], ...] = (),
                 updates: dict[str, str] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.events = events
        self.updates = dict(updates or {})   # output dataset → its failed update id


class PipelineRun:
    def __init__(self, spark, ctx: LakeContext, *,
                 emit: Callable[[dict[str, Any]], Any] = post_event) -> None:
        self.spark = spark
        self.ctx = ctx
        self.emit = emit
        self.writer = OutputWriter(ctx)

    def run(self, request: RunRequest) -> RunResult:
        config = request.config
        unknown = sorted(set(request.as_of) - {i.alias for i in config.inputs})
        if unknown:
            raise EdlError(f"--as-of names {', '.join(unknown)}, which pipeline {config.name} "
                           "has no input called", hint="inputs: " + ", ".join(
                               i.alias for i in config.inputs))
        records = self._records(config)
        check_output_tiers({i.dataset: records[i.dataset].tier for i in config.inputs},
                           {o.dataset: records[o.dataset].tier for o in config.outputs})
        digest = code_hash(config.folder)
        inputs, frames = self._read_inputs(config, records, request.as_of)
        events: list[dict[str, Any]] = []
        planned = [DatasetVersion(o.alias, o.dataset, "", self.ctx.data_bucket(
            records[o.dataset])) for o in config.outputs]

        def event(kind: str, outputs: list[DatasetVersion], error: str | None = None) -> None:
            body = run_event(kind, instance=self.ctx.instance, pipeline=config.name,
                             run_id=request.run_id, code_hash=digest, inputs=list(inputs),
                             outputs=outputs, error=error)
            events.append(body)
            self.emit(body)

        event(START, planned)
        pending = self._allocate(config, records, request)
        outputs = [DatasetVersion(o.alias, o.dataset, pending[o.alias].update_id,
                                  pending[o.alias].bucket) for o in config.outputs]
        lineage = lineage_record(pipeline=config.name, run_id=request.run_id,
                                 job_id=request.job_id, code_hash=digest, inputs=list(inputs),
                                 outputs=outputs)
        try:
            produced = self._produce(config, frames)
            staged = self._stage_and_check(config, records, pending, produced)
        except BaseException as exc:
            reason = self._reason(exc)
            for alias, update in pending.items():
                self.writer.discard(update, records[config.output(alias).dataset], reason,
                                    lineage=lineage)
            event(FAIL, outputs, error=reason)
            failed = {u.dataset: u.update_id for u in pending.values()}
            if isinstance(exc, EdlError):
                raise PipelineRunError(str(exc.message), exc.hint, events=tuple(events),
                                       updates=failed) from exc
            if isinstance(exc, Exception):
                raise PipelineRunError(reason, "the traceback is in the run's log",
                                       events=tuple(events), updates=failed) from exc
            raise
        complete = {}
        for output in config.outputs:
            complete[output.alias] = self.writer.commit(staged[output.alias], lineage=lineage)
            log.info("%s - output %s: %s update %s complete, %d rows", config.name,
                     output.alias, output.dataset, complete[output.alias].update_id,
                     complete[output.alias].rows)
        event(COMPLETE, outputs)
        return RunResult(request.run_id, tuple(inputs), complete, tuple(events))

    # -- steps ----------------------------------------------------------------------------------

    def _records(self, config: PipelineConfig) -> dict[str, DatasetRecord]:
        names = sorted(set(config.input_datasets()) | set(config.output_datasets()))
        return {name: self.ctx.metadata.get_dataset(name) for name in names}

    def _read_inputs(self, config: PipelineConfig, records: dict[str, DatasetRecord],
                     as_of: dict[str, str]) -> tuple[list[DatasetVersion], dict[str, Any]]:
        versions, frames = [], {}
        for item in config.inputs:
            wanted = format_update_id(as_of[item.alias]) if item.alias in as_of else None
            plan = lake.plan_read(item.dataset, self.ctx.updates.list_updates(item.dataset),
                                  wanted)
            log.info("%s - input %s: %s as of update %s", config.name, item.alias,
                     item.dataset, plan.as_of)
            frames[item.alias] = lake.read(self.spark, item.dataset, as_of=plan.as_of,
                                           context=self.ctx)
            read = ([plan.snapshot] if plan.snapshot else []) + list(plan.deltas)
            versions.append(DatasetVersion(item.alias, item.dataset, plan.as_of,
                                           self.ctx.data_bucket(records[item.dataset]),
                                           tuple(u.update_id for u in read)))
        return versions, frames

    def _allocate(self, config: PipelineConfig, records: dict[str, DatasetRecord],
                  request: RunRequest) -> dict[str, UpdateRecord]:
        pending: dict[str, UpdateRecord] = {}
        source = f"pipeline:{config.name}"
        try:
            for output in config.outputs:
                record = records[output.dataset]
                update = self.ctx.updates.allocate_update(
                    output.dataset, output.kind, source, self.ctx.data_bucket(record),
                    requested_by=request.requested_by, job_id=request.job_id or request.run_id)
                pending[output.alias] = update
        except BaseException:
            for alias, update in pending.items():
                self.writer.discard(update, records[config.output(alias).dataset],
                                    "the run could not allocate all of its outputs")
            raise
        return pending

    def _produce(self, config: PipelineConfig, frames: dict[str, Any]) -> dict[str, Any]:
        if config.kind == "sql":
            return self._run_sql(config, frames)
        folder = str(config.folder.resolve())
        sys.path.insert(0, folder)
        try:
            run = _load_run(config.folder / PYSPARK_FILE)
            try:
                produced = run(self.spark, dict(frames), dict(config.params))
            except Exception as exc:
                log.error("%s - run() raised:\n%s", config.name, traceback.format_exc())
                raise PipelineCodeError(
                    f"pipeline {config.name}: run() raised {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}",
                    hint="the traceback is in the run's log") from exc
        finally:
            _forget_modules(folder)
        return _checked_outputs(config, produced)

    def _run_sql(self, config: PipelineConfig, frames: dict[str, Any]) -> dict[str, Any]:
        for alias, frame in frames.items():
            frame.createOrReplaceTempView(alias)
        produced = {}
        for output in config.outputs:
            path = config.sql_file(output.alias)
            try:
                produced[output.alias] = self.spark.sql(path.read_text(encoding="utf-8"))
            except Exception as exc:
                raise PipelineCodeError(
                    f"pipeline {config.name}: {path.name} failed: "
                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                    hint=f"the query may read the inputs {', '.join(frames)} as tables") from exc
        return produced

    def _stage_and_check(self, config: PipelineConfig, records: dict[str, DatasetRecord],
                         pending: dict[str, UpdateRecord],
                         produced: dict[str, Any]) -> dict[str, StagedOutput]:
        staged = {}
        for output in config.outputs:
            record = records[output.dataset]
            frame = produced[output.alias]
            if output.kind == "delta":
                self._check_delta(output.dataset, record, frame)
            checks = config.checks.get(output.alias, ())
            if checks:   # computed once: what is checked is what is written
                frame = frame.persist()
            try:
                staged[output.alias] = self.writer.stage(frame, pending[output.alias], record)
                if checks:
                    run_checks(frame, output.alias, output.dataset, checks)
            except EdlError:
                raise
            except Exception as exc:
                log.error("%s - computing output %s failed:\n%s", config.name, output.alias,
                          traceback.format_exc())
                raise PipelineCodeError(
                    f"pipeline {config.name}: computing output {output.alias} failed: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                    hint="the traceback is in the run's log") from exc
            finally:
                if checks:
                    frame.unpersist()
        return staged

    @staticmethod
    def _check_delta(dataset: str, record: DatasetRecord, frame) -> None:
        if record.delta is None:
            raise EdlError(f"output dataset {dataset} has no delta convention, so it takes no "
                           "deltas", hint="write a snapshot (kind: snapshot), or give the "
                           "dataset key columns with edl deploy-dataset")
        missing = [k for k in record.delta.key_columns if k not in frame.columns]
        if missing:
            raise EdlError(f"the delta for {dataset} lacks the key column(s) "
                           f"{', '.join(missing)}",
                           hint=f"its key columns: {', '.join(record.delta.key_columns)}")

    @staticmethod
    def _reason(exc: BaseException) -> str:
        if isinstance(exc, EdlError):
            return exc.message[:4000]
        text = str(exc).splitlines()[0] if str(exc) else ""
        return f"internal error: {type(exc).__name__}: {text}"[:4000]


def _forget_modules(folder: str) -> None:
    """Take the pipeline's folder off the path and forget the modules imported from it, so that
    the next pipeline run in this process (the local runtime runs many) imports its own."""
    while folder in sys.path:
        sys.path.remove(folder)
    prefix = folder.rstrip("/") + "/"
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(prefix):
            del sys.modules[name]


def _load_run(path: Path):
    """`run` from the pipeline's `pipeline.py` (its folder is on the path meanwhile)."""
    name = f"edl_pipeline_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PipelineCodeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        log.error("loading %s raised:\n%s", path, traceback.format_exc())
        raise PipelineCodeError(f"{path}: importing it raised {type(exc).__name__}: {exc}",
                                hint="the traceback is in the run's log") from exc
    run = getattr(module, "run", None)
    if not callable(run):
        raise PipelineCodeError(f"{path} defines no run() function",
                                hint="def run(spark, inputs, params): return {alias: df}")
    return run


def _checked_outputs(config: PipelineConfig, produced: Any) -> dict[str, Any]:
    from pyspark.sql import DataFrame

    wanted = [o.alias for o in config.outputs]
    if not isinstance(produced, dict):
        raise PipelineCodeError(
            f"pipeline {config.name}: run() returned {type(produced).__name__}, not a dict",
            hint=f"return {{{', '.join(repr(a) + ': dataframe' for a in wanted)}}}")
    missing = [a for a in wanted if a not in produced]
    extra = sorted(str(a) for a in produced if a not in wanted)
    if missing or extra:
        raise PipelineCodeError(
            f"pipeline {config.name}: run() returned "
            + "; ".join(part for part in (
                f"no {', '.join(missing)}" if missing else "",
                f"unknown output(s) {', '.join(extra)}" if extra else "") if part),
            hint=f"its outputs: {', '.join(wanted)}")
    # pyspark.sql.DataFrame is the base of the classic and the Spark Connect DataFrames
    wrong = [a for a in wanted if not isinstance(produced[a], DataFrame)]
    if wrong:
        raise PipelineCodeError(
            f"pipeline {config.name}: run() returned "
            + ", ".join(f"{a} as {type(produced[a]).__name__}" for a in wrong)
            + ", not a Spark DataFrame", hint="return a DataFrame for each output")
    return {a: produced[a] for a in wanted}
