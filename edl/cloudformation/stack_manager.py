"""Plans and executes the deployment of the lake's components as CloudFormation stacks.

A component (core, a dataset: see `components/`) is a list of `StackSpec`s: a stack name, a
region, a template and parameters. Parameters may name another stack's output (`OutputRef`); a
stack depends on exactly the stacks whose outputs it reads, so the order of deploys (and of
deletes, reversed) follows from the parameters and cannot drift from them. An output is resolved
from its stack once that stack is deployed (or, when it is unchanged, already at plan time).

Deploying is two steps:

1. `plan()` renders and lints every template, reads the live stacks with one describe call per
   region, and decides for each stack: create, update, recreate, unchanged or blocked. A stack is
   unchanged when its `EdlFingerprint` parameter (a hash of the rendered template and its
   parameters) is the one we would deploy now, so an unchanged stack costs no change set. For an
   update, the deployed template is compared with the new one to find retained resources (data)
   that the update would replace (`replacement.py`). A stack in a failed state is blocked, with
   the command that recovers it. The plan is frozen data: `edl plan` prints it, `edl deploy-*`
   executes it.
2. `execute()` refuses a plan with a blocked stack or a replacement the user did not allow, before
   touching anything; else it deploys the stacks that change, each as soon as the stacks it reads
   from are done, at most `max_workers` at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from botocore.exceptions import ClientError

from edl import naming
from edl.cloudformation.plan import (
    Action,
    OutputRef,
    Plan,
    PlannedStack,
    StackSpec,
    fingerprint,
    in_dependency_order,
)
from edl.cloudformation.render import (
    RenderedTemplate,
    lint_templates,
    parse_template,
    render_template,
    template_context,
)
from edl.cloudformation.replacement import Replacement, retained_replacements
from edl.cloudformation.stack_client import (
    FINGERPRINT_PARAMETER,
    FIRST_CREATE_FAILED,
    STABLE_OK,
    STUCK,
    DeployResult,
    StackClient,
    StackState,
)
from edl.config import Instance, LakeConfig
from edl.errors import DeployError

log = logging.getLogger(__name__)


class StackManager:
    """Plans and deploys stacks for one instance, as its CloudFormation role."""

    def __init__(self, config: LakeConfig, instance: Instance,
                 client_for_region: Callable[[str], StackClient], *, max_workers: int = 4) -> None:
        self.config = config
        self.instance = instance
        self.client_for_region = client_for_region
        self.max_workers = max_workers
        self._clients: dict[str, StackClient] = {}
        self._outputs: dict[str, dict[str, str]] = {}
        self._templates: dict[str, RenderedTemplate] = {}

    @property
    def stack_prefix(self) -> str:
        return naming.stack_prefix(self.instance.name)

    def client(self, region: str) -> StackClient:
        if region not in self._clients:
            self._clients[region] = self.client_for_region(region)
        return self._clients[region]

    def render(self, template: str) -> RenderedTemplate:
        if template not in self._templates:
            self._templates[template] = render_template(
                template, template_context(self.config, self.instance))
        return self._templates[template]

    def live_stacks(self, regions: Sequence[str] | None = None) -> dict[str, StackState]:
        """The instance's live stacks in the given regions (default: all of the instance's)."""
        found: dict[str, StackState] = {}
        for region in regions or self.instance.regions:
            found.update(self.client(region).list_stacks(self.stack_prefix))
        return found

    # -- plan --------------------------------------------------------------------------------------

    def plan(self, title: str, specs: Sequence[StackSpec]) -> Plan:
        templates = [self.render(spec.template) for spec in specs]
        lint_templates(templates, self.instance.regions)
        live = self.live_stacks()
        missing = sorted({r.stack for s in specs for r in s.refs()}
                         - {s.name for s in specs} - set(live))
        if missing:
            raise DeployError(
                f"{title} needs stack(s) that do not exist: {', '.join(missing)}",
                hint=f"deploy core first: edl deploy-core --instance {self.instance.name}",
            )
        planned: dict[str, PlannedStack] = {}
        for spec in in_dependency_order(specs):
            planned[spec.name] = self._plan_one(spec, live, planned)
        return Plan(title, tuple(planned[s.name] for s in specs), live)

    def _plan_one(self, spec: StackSpec, live: dict[str, StackState],
                  planned: dict[str, PlannedStack]) -> PlannedStack:
        template = self.render(spec.template)
        current = live.get(spec.name)
        if current is None:
            return PlannedStack(spec, Action.CREATE, "does not exist yet", template, None)
        if current.status in STUCK or current.status == FIRST_CREATE_FAILED:
            return self._failed_state(spec, template, current)
        if current.in_progress:
            return PlannedStack(spec, Action.UPDATE, f"busy ({current.status})", template, current)
        waiting = sorted({r.stack for r in spec.refs()
                          if r.stack in planned and planned[r.stack].action is not Action.UNCHANGED})
        if waiting:
            return PlannedStack(spec, Action.UPDATE,
                                f"takes values from {', '.join(waiting)}, which change",
                                template, current,
                                self._replacements(spec, template, current, live, set(waiting)))
        parameters = self.resolve(spec, live)
        if current.status in STABLE_OK and current.fingerprint == fingerprint(template, parameters):
            return PlannedStack(spec, Action.UNCHANGED, "template and parameters as deployed",
                                template, current)
        why = "template or parameters changed" if current.status in STABLE_OK \
            else f"last operation ended {current.status}"
        return PlannedStack(spec, Action.UPDATE, why, template, current,
                            self._replacements(spec, template, current, live, set()))

    def _failed_state(self, spec: StackSpec, template: RenderedTemplate,
                      current: StackState) -> PlannedStack:
        """A stack whose first create failed and that holds nothing is recreated; any other
        failed state is left alone (it may hold data), with the command that recovers it."""
        client = self.client(spec.region)
        if current.status == FIRST_CREATE_FAILED and client.safe_to_recreate(spec.name):
            return PlannedStack(spec, Action.RECREATE,
                                f"its first create failed ({current.status}) and it holds nothing",
                                template, current)
        reason, failed = client.last_failure(spec.name)
        return PlannedStack(spec, Action.BLOCKED,
                            f"{current.status}: {reason or 'no failure reason was reported'}",
                            template, current, recovery=self._recovery(current, failed))

    def _recovery(self, state: StackState, failed: tuple[str, ...]) -> str:
        where = f"--stack-name {state.name} --region {state.region}"
        if self.instance.is_local:
            where += f" --endpoint-url {self.instance.endpoint_url}"
        if state.status == "UPDATE_ROLLBACK_FAILED":
            skip = f" --resources-to-skip {' '.join(failed)}" if failed else ""
            return (f"fix what failed, then: aws cloudformation continue-update-rollback "
                    f"{where}{skip}; then deploy again")
        retain = f" --retain-resources {' '.join(failed)}" \
            if failed and state.status == "DELETE_FAILED" else ""
        return (f"check what the stack still holds, then: aws cloudformation delete-stack "
                f"{where}{retain} (as the deploy role); then deploy again")

    def _replacements(self, spec: StackSpec, template: RenderedTemplate, current: StackState,
                      live: dict[str, StackState], changing: set[str]) -> tuple[Replacement, ...]:
        """Retained resources the update would replace. Values read from stacks that change in
        this plan are not known yet (None): properties made of them are not compared."""
        if current.status not in STABLE_OK:
            return ()  # nothing deployed to compare with (a stack still in review)
        known = spec.without_values_from(changing)
        parameters: dict[str, str | None] = {k: None for k, v in spec.parameters}
        parameters.update(self.resolve(known, live))
        deployed = self.client(spec.region).template(spec.name)
        return tuple(retained_replacements(spec.name, deployed, current.parameters,
                                           parse_template(template.body, template.name),
                                           parameters))

    def resolve(self, spec: StackSpec, live: dict[str, StackState]) -> dict[str, str]:
        """The spec's parameters as strings, with output references looked up."""
        def one(value) -> str:
            if isinstance(value, OutputRef):
                return value.format.format(self._output(value, live))
            return str(value)

        resolved = {}
        for key, value in spec.parameters:
            resolved[key] = ",".join(one(v) for v in value) if isinstance(value, tuple) else one(value)
        return resolved

    def _output(self, ref: OutputRef, live: dict[str, StackState]) -> str:
        if ref.stack not in self._outputs:
            state = live.get(ref.stack)
            if state is None:
                raise DeployError(
                    f"stack {ref.stack} does not exist, and {ref.output} is needed from it",
                    hint=f"deploy core first: edl deploy-core --instance {self.instance.name}",
                )
            client = self.client(state.region)
            self._outputs[ref.stack] = client.outputs(ref.stack, client.template(ref.stack),
                                                      state.parameters)
        try:
            return self._outputs[ref.stack][ref.output]
        except KeyError:
            raise DeployError(f"stack {ref.stack} has no output {ref.output}",
                              hint="deploy core again to bring it up to date") from None

    # -- execute ---------------------------------------------------------------------------------

    def execute(self, plan: Plan, allow_replace: frozenset[str] = frozenset()
                ) -> list[DeployResult]:
        """Deploy what the plan changes, each stack once its dependencies are done. Refused,
        before anything is deployed, if a stack is blocked or the plan would replace a retained
        resource not named in `allow_replace`."""
        self._check(plan, allow_replace)
        todo = {s.name: s for s in plan.changes}
        results: list[DeployResult] = []
        failures: list[DeployError] = []
        running: dict[Future, str] = {}
        live = dict(plan.live)

        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="edl-deploy") as pool:
            while todo or running:
                if not failures:
                    # Submit no more than the pool runs at once, so that after a failure
                    # nothing queued starts.
                    pending = set(todo) | set(running.values())
                    for name in [n for n, s in todo.items()
                                 if not pending.intersection(s.spec.depends_on)]:
                        if len(running) >= self.max_workers:
                            break
                        planned = todo.pop(name)
                        running[pool.submit(self._deploy_one, planned, live)] = name
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    running.pop(future)
                    try:
                        results.append(future.result())
                    except DeployError as exc:
                        failures.append(exc)
        if failures:
            skipped = sorted(todo)
            message = failures[0].message
            if len(failures) > 1:
                message += f" (and {len(failures) - 1} more stack(s) failed)"
            if skipped:
                message += f"; not attempted: {', '.join(skipped)}"
            raise DeployError(message, hint=failures[0].hint)
        return results

    def _check(self, plan: Plan, allow_replace: frozenset[str]) -> None:
        blocked = [s for s in plan.changes if s.action is Action.BLOCKED]
        if blocked:
            first = blocked[0]
            others = f" (and {len(blocked) - 1} more blocked stack(s))" if len(blocked) > 1 else ""
            raise DeployError(f"stack {first.name} is {first.reason}; EDL does not delete a "
                              f"stack that may hold data{others}; nothing was deployed",
                              hint=first.recovery)
        replacements = [r for s in plan.changes for r in s.replacements]
        unknown = sorted(allow_replace - {r.name for r in replacements})
        if unknown:
            raise DeployError(f"--allow-replace names no replacement of this plan: "
                              f"{', '.join(unknown)}",
                              hint="run `edl plan` to see what would be replaced")
        refused = [r for r in replacements if r.name not in allow_replace]
        if refused:
            raise DeployError(
                "the deploy would replace retained resources (their data stays behind, the "
                f"stack gets a new empty one): {'; '.join(map(str, refused))}; nothing was deployed",
                hint="if that is intended, deploy again with "
                     + " ".join(f"--allow-replace {r.name}" for r in refused))

    def _deploy_one(self, planned: PlannedStack, live: dict[str, StackState]) -> DeployResult:
        spec = planned.spec
        client = self.client(spec.region)
        parameters = self.resolve(spec, live)
        parameters[FINGERPRINT_PARAMETER] = fingerprint(planned.template, parameters)
        current = planned.current
        if planned.action is Action.UPDATE and current is not None \
                and current.status in STABLE_OK and current.fingerprint == parameters[FINGERPRINT_PARAMETER]:
            # Planned because a stack it reads from changed; that stack's outputs did not.
            log.info("%s - unchanged: the outputs it reads are as before", spec.name)
            return DeployResult(spec.name, False, current.status, 0.0)
        log.info("%s - %s (%s)", spec.name, planned.action.value, planned.reason)
        if spec.uploads:
            self._upload(spec, client)
        result = client.deploy(spec.name, planned.template.body, parameters,
                               current=planned.current,
                               tags={"edl:instance": self.instance.name,
                                     "edl:template": spec.template})
        # Stacks that depend on this one read its outputs afresh.
        self._outputs.pop(spec.name, None)
        state = client.describe(spec.name)
        if state:
            live[spec.name] = state
        return result

    def _upload(self, spec: StackSpec, client: StackClient) -> None:
        """Put the objects the stack references that are not in S3 yet (their keys hold a hash
        of the content, so an existing object is the same one)."""
        if client.s3 is None:
            raise DeployError(f"{spec.name} needs objects in S3 but no S3 client was given")
        s3 = client.s3()
        for upload in spec.uploads:
            try:
                s3.head_object(Bucket=upload.bucket, Key=upload.key)
                log.info("%s - %s already uploaded", spec.name, upload.url)
                continue
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
                    raise DeployError(f"{spec.name}: cannot check {upload.url}: {exc}") from None
            log.info("%s - uploading %s", spec.name, upload.url)
            try:
                s3.put_object(Bucket=upload.bucket, Key=upload.key, Body=upload.body())
            except ClientError as exc:
                raise DeployError(f"{spec.name}: cannot upload {upload.url}: {exc}") from None

    # -- outputs and removal -----------------------------------------------------------------

    def outputs(self, state: StackState) -> dict[str, str]:
        client = self.client(state.region)
        outputs = client.outputs(state.name, client.template(state.name), state.parameters)
        outputs.pop("Fingerprint", None)
        return outputs

    def delete_stacks(self, states: Sequence[StackState]) -> None:
        """Delete stacks in parallel (they must not depend on each other)."""
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            futures = [pool.submit(self.client(s.region).delete, s.name) for s in states]
            errors = [e for f in futures if (e := f.exception()) is not None]
        if errors:
            raise errors[0]
