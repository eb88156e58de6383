"""``aiida-mlip launch|status|watch|lineage``: run active learning and follow it."""

from __future__ import annotations

import json
import pathlib

import click
from aiida.cmdline.params import arguments, types
from aiida.cmdline.utils import echo

from aiida_mlip.cmdline.root import cmd_root
from aiida_mlip.potentials.backends import BACKENDS


def _read_structures(sources, param_hint: str = "STRUCTURES"):
    """StructureData pks (as the nodes, for provenance) or files any ASE reader understands (as ASE Atoms)."""
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent
    from ase.io import read

    images = []
    for source in sources:
        if source.isdigit():
            try:
                node = orm.load_node(int(source))
            except (NotExistent, MultipleObjectsError):
                raise click.BadParameter(f"no node with pk {source}", param_hint=param_hint) from None
            if not isinstance(node, orm.StructureData):
                raise click.BadParameter(
                    f"node <{source}> is a {type(node).__name__}, not a StructureData",
                    param_hint=param_hint,
                )
            images.append(node)
        elif pathlib.Path(source).is_file():
            try:
                found = read(source, index=":")
            except Exception as exception:  # ASE's readers raise anything from AssertionError to KeyError
                reason = " ".join(str(exception).split()) or (
                    f"not a valid {pathlib.Path(source).suffix.lstrip('.').upper() or 'structure'} file "
                    f"(ASE's reader raised {type(exception).__name__})"
                )
                raise click.BadParameter(
                    f"cannot read structures from {source}: {reason}", param_hint=param_hint
                ) from None
            if not found:
                raise click.BadParameter(f"{source} holds no structure", param_hint=param_hint)
            images.extend(found)
        else:
            raise click.BadParameter(
                f"{source} is neither a StructureData pk nor a file", param_hint=param_hint
            )
    return images


def _read_overrides(
    path: str | None,
    param_hint: str = "--overrides",
    example: str = "a mapping of settings blocks (e.g. `trust: {lo: 0.1, hi: 1.0}`)",
) -> dict | None:
    """The ``--overrides`` (or other ``param_hint``) YAML file as a mapping (``None`` without a file or for an empty one)."""
    import yaml

    if not path:
        return None
    try:
        values = yaml.safe_load(pathlib.Path(path).read_text())
    except yaml.YAMLError as exception:
        mark = getattr(exception, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exception, "problem", None) or " ".join(str(exception).split())
        raise click.BadParameter(
            f"{path} is not valid YAML: {problem}{where}", param_hint=param_hint
        ) from None
    if values is not None and not isinstance(values, dict):
        kind = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
            type(values), type(values).__name__
        )
        raise click.BadParameter(f"{path} holds a YAML {kind}, not {example}", param_hint=param_hint)
    return values


#: The options of pw.x labels, shared by the commands that run pw.x (launch, neb, validate).
PW_CODE_OPTION = click.option("--pw-code", help="Label of the pw.x code (with pw labels; `verdi code list`).")
PSEUDO_FAMILY_OPTION = click.option(
    "--pseudo-family",
    help="Label of the pseudopotential family (with pw labels; `aiida-mlip setup pseudos`).",
)


def _labeller(
    spec: str, pseudo_family: str | None, pw_code: str | None, param_hint: str = "--labeller"
) -> dict:
    """``emt``, ``ase:package.module.Class[:json-kwargs]`` or ``pw``."""
    if spec == "emt":
        return {"ase": {"calculator": "ase.calculators.emt.EMT"}}
    if spec.startswith("ase:"):
        path, _, kwargs = spec[4:].partition(":")
        try:
            kwargs = json.loads(kwargs) if kwargs else {}
        except json.JSONDecodeError as exception:
            raise click.BadParameter(
                f"the keyword arguments after {path!r} are not valid JSON: {exception.msg} "
                f"at column {exception.colno} of {spec[5 + len(path) :]!r}",
                param_hint=param_hint,
            ) from None
        if not isinstance(kwargs, dict):
            raise click.BadParameter(
                f"the keyword arguments after {path!r} must be a JSON object, got {type(kwargs).__name__}",
                param_hint=param_hint,
            )
        return {"ase": {"calculator": path, "kwargs": kwargs}}
    if spec == "pw":
        from aiida import orm
        from aiida.common.exceptions import MultipleObjectsError, NotExistent

        from aiida_mlip.workflows.pw_labels import load_pseudo_family

        if not pseudo_family or not pw_code:
            raise click.UsageError(f"{param_hint} pw needs --pw-code and --pseudo-family")
        try:
            code = orm.load_code(pw_code)
        except (NotExistent, MultipleObjectsError, ValueError) as exception:
            raise click.BadParameter(
                f"no code {pw_code!r}: {' '.join(str(exception).split())} (register pw.x with "
                "`aiida-mlip setup pw`; `verdi code list` shows the codes)",
                param_hint="--pw-code",
            ) from None
        try:
            load_pseudo_family(pseudo_family)
        except ValueError as exception:
            raise click.BadParameter(str(exception), param_hint="--pseudo-family") from None
        return {"pw": {"code": code, "pseudo_family": pseudo_family}}
    raise click.BadParameter(
        f"unknown labeller {spec!r}: use emt, ase:module.Class or pw", param_hint=param_hint
    )


@cmd_root.command("launch")
@click.argument("structures", nargs=-1, required=True)
@click.option(
    "--protocol", type=click.Choice(["fast", "balanced", "precise"]), default="balanced", show_default=True
)
@click.option(
    "--labeller", default="emt", show_default=True, help="emt, ase:package.module.Class[:JSON kwargs] or pw."
)
@PW_CODE_OPTION
@PSEUDO_FAMILY_OPTION
@click.option(
    "--overrides", type=click.Path(exists=True, dir_okay=False), help="YAML file merged over the protocol."
)
@click.option(
    "--cluster",
    type=click.Path(exists=True, dir_okay=False),
    help="Cluster YAML (see `aiida-mlip setup computer`): its codes and per-step options are used.",
)
@click.option(
    "--backend",
    type=click.Choice(sorted(BACKENDS)),
    help="Model backend (training.backend; mace needs pip install 'aiida-mlip[mace]'). "
    "Default: the protocol's or the overrides file's (builtin).",
)
@click.option(
    "--daemon", "-d", is_flag=True, help="Submit to the daemon and return; otherwise run here with progress."
)
def cmd_launch(structures, protocol, labeller, pw_code, pseudo_family, overrides, cluster, backend, daemon):
    """Start active learning from structure files or StructureData pks."""
    from aiida.engine import submit

    from aiida_mlip.cmdline.errors import debugging, one_line, validation_message
    from aiida_mlip.foreground import run_get_node
    from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

    images = _read_structures(structures)
    override = _read_overrides(overrides)
    if backend:
        override = dict(override or {})
        override["training"] = {**(override.get("training") or {}), "backend": backend}
    codes, options, kept = None, None, ""
    if cluster:
        from aiida_mlip.clusters import ClusterConfigError, load_cluster_config, setup_cluster, step_options

        try:
            config = load_cluster_config(cluster)
            codes = setup_cluster(config, log=lambda *_: None)
        except ClusterConfigError as exception:
            raise click.BadParameter(str(exception), param_hint="--cluster") from None
        options = step_options(config)
        labels = ", ".join(sorted(code.full_label for code in codes.values()))
        kept = f" (the computer and codes set up from {cluster} are kept: {labels})"
        if labeller == "pw" and not pw_code and "quantumespresso.pw" in codes:
            pw_code = codes["quantumespresso.pw"].full_label
    source = f" (settings from --overrides {overrides})" if overrides else ""
    builder = None
    try:
        builder = ActiveLearningWorkChain.get_builder_from_protocol(
            images,
            labeller=_labeller(labeller, pseudo_family, pw_code),
            codes=codes,
            protocol=protocol,
            overrides=override,
            options=options,
        )
        # the inputs are validated (and refused) when the process is made, before anything runs
        node = submit(builder) if daemon else run_get_node(builder)[1]
    except click.ClickException as exception:
        exception.message += kept
        raise
    except ValueError as exception:
        message = one_line(exception) if builder is None else validation_message(exception)
        if debugging() or message is None:
            raise
        echo.echo_critical(f"refused: {message}{source}{kept}")
    if daemon:
        echo.echo_success(
            f"submitted ActiveLearningWorkChain<{node.pk}>; follow it with: aiida-mlip watch {node.pk}"
        )
        return
    _print_status(node)
    if not node.is_finished_ok:
        raise SystemExit(1)


def _print_status(node):
    from aiida_mlip.history import format_history
    from aiida_mlip.workflows.failures import labelling_failures

    output = node.outputs.history.get_dict() if "history" in node.outputs else {}
    history = output.get("iterations", node.base.extras.get("history", []))
    echo.echo(
        f"{node.process_label}<{node.pk}>: {node.process_state.value if node.process_state else '?'}"
        + (f", exit {node.exit_status} {node.exit_message or ''}" if node.is_terminated else "")
    )
    failed_labels = labelling_failures(node)
    if failed_labels:
        echo.echo(failed_labels)
    echo.echo(format_history(history) if history else "no iteration finished yet")
    ended = output.get("ended") or (history[-1].get("convergence") if history else None)
    if ended and (node.is_terminated or ended.get("converged")):
        echo.echo(f"ended by `{ended['criterion']}`: {ended['reason']}")
    for record in history:
        calibration = record.get("calibration")
        if calibration:
            spearman = calibration.get("spearman")
            echo.echo(
                f"iteration {record['iteration']}: calibration on {calibration.get('n_pairs')} pairs "
                f"({calibration.get('n_new_pairs', calibration.get('n_pairs'))} new labels, "
                f"{calibration.get('n_validation_pairs', 0)} validation frames), "
                f"factor {calibration.get('factor'):.2f}, exponent {calibration.get('exponent', 1.0):.2f}"
                + (" (fallback: too few pairs)" if calibration.get("fallback") else "")
                + f", rank correlation {'n/a' if spearman is None else f'{spearman:.2f}'}"
            )
        if record.get("properties"):
            from aiida_mlip.learning.property_convergence import quantity_text

            echo.echo(
                f"iteration {record['iteration']}: properties: "
                + "; ".join(quantity_text(name, entry) for name, entry in record["properties"].items())
                + (
                    f"; probes due for the next iteration: {record['probes_due']}"
                    if record.get("probes_due")
                    else ""
                )
            )
        if record.get("n_probes"):
            echo.echo(f"iteration {record['iteration']}: labelled {record['n_probes']} property probe(s)")
        if record.get("training_status", "ok") != "ok":
            echo.echo(
                f"iteration {record['iteration']}: training {record['training_status']}"
                + (", retrained from scratch" if record.get("retrained_from_scratch") else "")
            )
    if "potential" in node.outputs:
        echo.echo(
            f"potential <{node.outputs.potential.pk}>, dataset <{node.outputs.dataset.pk}> "
            f"({node.outputs.dataset.n_frames} frames)"
        )
    if "history_plot" in node.outputs:
        echo.echo(
            f"history plot: verdi node repo cat {node.outputs.history_plot.pk} history.png > history.png"
        )
    _print_validations(node)


def _print_validations(node):
    """One line per validation of a potential this run made (``aiida-mlip validate``)."""
    from aiida_mlip.properties.validation import PROPERTIES
    from aiida_mlip.queries import validations_of

    for validation in validations_of(node):
        line = f"validation <{validation.pk}> of potential <{validation.inputs.potential.pk}>"
        if "comparison" not in validation.outputs:
            state = validation.process_state.value if validation.process_state else "?"
            echo.echo(
                f"{line}: {state}" + (f", exit {validation.exit_status}" if validation.is_terminated else "")
            )
            continue
        comparison = validation.outputs.comparison.get_dict()
        properties = [name for name in PROPERTIES if name in comparison["properties"]]
        failed = [name for name in properties if comparison["properties"][name]["status"] != "ok"]
        judged = (
            f"{comparison['n_within_tolerance']} of {comparison['n_judged']} quantities within tolerance"
            if comparison["n_judged"]
            else f"{comparison['n_quantities']} quantities, no reference"
        )
        echo.echo(
            f"{line}: {', '.join(properties)}: {judged}"
            + (f" (reference {comparison['reference']})" if comparison.get("reference") else "")
            + (f"; failed: {', '.join(failed)}" if failed else "")
        )


@cmd_root.command("status")
@arguments.PROCESS("run")
def cmd_status(run):
    """The iteration table and convergence of an active-learning run, and the validations of its potential."""
    _print_status(run)


@cmd_root.command("watch")
@arguments.PROCESS("run")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between checks when polling.")
def cmd_watch(run, interval):
    """Follow a run: live events over RabbitMQ, or by polling the database on other brokers."""
    from aiida_mlip.events import broker_url, follow, poll

    def show(event):
        fields = {k: v for k, v in event.items() if k not in ("run", "uuid", "time", "step", "iteration")}
        echo.echo(f"[{event.get('iteration', '-')}] {event['step']}: {json.dumps(fields, default=str)}")

    url = None if run.is_terminated else broker_url()
    if url is not None:
        echo.echo_report(f"following events of run <{run.pk}> on the broker")
        try:
            while not run.is_terminated:
                for event in follow(run.pk, url=url, timeout=interval):
                    show(event)
                    if event["step"] == "finished":
                        return
        except Exception as exception:
            echo.echo_warning(f"broker unavailable ({exception}); polling the database instead")
    for event in poll(run, interval=interval):
        show(event)


@cmd_root.command("lineage")
@arguments.DATUM("potential", type=types.DataParamType(sub_classes=("aiida.data:mlip.potential",)))
def cmd_lineage(potential):
    """Every training run, dataset version, label set and labelling calculation behind a potential."""
    from tabulate import tabulate

    from aiida_mlip.data.potential import PotentialData
    from aiida_mlip.queries import potential_lineage

    if not isinstance(potential, PotentialData):
        echo.echo_critical(f"node <{potential.pk}> is not a PotentialData")
    lineage = potential_lineage(potential)
    echo.echo(tabulate(lineage.as_table(), headers=["kind", "PK", "what", "created"]))
    echo.echo(f"\n{lineage.summary()}")
