"""``aiida-mlip launch|status|watch|lineage``: run active learning and follow it."""

from __future__ import annotations

import json
import pathlib

import click
from aiida.cmdline.params import arguments
from aiida.cmdline.utils import echo

from aiida_mlip.cmdline.root import cmd_root


def _read_structures(sources):
    """StructureData pks or files any ASE reader understands, as ASE Atoms."""
    from aiida import orm
    from ase.io import read

    images = []
    for source in sources:
        if source.isdigit():
            node = orm.load_node(int(source))
            if not isinstance(node, orm.StructureData):
                raise click.BadParameter(f"node <{source}> is a {type(node).__name__}, not a StructureData")
            images.append(node.get_ase())
        elif pathlib.Path(source).is_file():
            try:
                images.extend(read(source, index=":"))
            except Exception as exception:
                raise click.BadParameter(f"cannot read structures from {source}: {exception}") from None
        else:
            raise click.BadParameter(f"{source} is neither a StructureData pk nor a file")
    return images


def _labeller(spec: str, pseudo_family: str | None, pw_code: str | None) -> dict:
    """``emt``, ``ase:package.module.Class[:json-kwargs]`` or ``pw``."""
    if spec == "emt":
        return {"ase": {"calculator": "ase.calculators.emt.EMT"}}
    if spec.startswith("ase:"):
        path, _, kwargs = spec[4:].partition(":")
        return {"ase": {"calculator": path, "kwargs": json.loads(kwargs) if kwargs else {}}}
    if spec == "pw":
        from aiida import orm

        if not pseudo_family or not pw_code:
            raise click.BadParameter("--labeller pw needs --pw-code and --pseudo-family")
        return {"pw": {"code": orm.load_code(pw_code), "pseudo_family": pseudo_family}}
    raise click.BadParameter(f"unknown labeller {spec!r}: use emt, ase:module.Class or pw")


@cmd_root.command("launch")
@click.argument("structures", nargs=-1, required=True)
@click.option(
    "--protocol", type=click.Choice(["fast", "balanced", "precise"]), default="balanced", show_default=True
)
@click.option(
    "--labeller", default="emt", show_default=True, help="emt, ase:package.module.Class[:JSON kwargs] or pw."
)
@click.option("--pw-code", help="Label of the pw.x code (with --labeller pw).")
@click.option("--pseudo-family", help="Label of the pseudopotential family (with --labeller pw).")
@click.option(
    "--overrides", type=click.Path(exists=True, dir_okay=False), help="YAML file merged over the protocol."
)
@click.option(
    "--cluster",
    type=click.Path(exists=True, dir_okay=False),
    help="Cluster YAML (see `aiida-mlip setup computer`): its codes and per-step options are used.",
)
@click.option(
    "--daemon", "-d", is_flag=True, help="Submit to the daemon and return; otherwise run here with progress."
)
def cmd_launch(structures, protocol, labeller, pw_code, pseudo_family, overrides, cluster, daemon):
    """Start active learning from structure files or StructureData pks."""
    import yaml
    from aiida.engine import run_get_node, submit

    from aiida_mlip.workflows.active_learning import ActiveLearningWorkChain

    images = _read_structures(structures)
    override = yaml.safe_load(pathlib.Path(overrides).read_text()) if overrides else None
    codes, options = None, None
    if cluster:
        from aiida_mlip.clusters import ClusterConfigError, load_cluster_config, setup_cluster, step_options

        try:
            config = load_cluster_config(cluster)
            codes = setup_cluster(config, log=lambda *_: None)
        except ClusterConfigError as exception:
            echo.echo_critical(str(exception))
        options = step_options(config)
        if labeller == "pw" and not pw_code and "quantumespresso.pw" in codes:
            pw_code = codes["quantumespresso.pw"].full_label
    try:
        builder = ActiveLearningWorkChain.get_builder_from_protocol(
            images,
            labeller=_labeller(labeller, pseudo_family, pw_code),
            codes=codes,
            protocol=protocol,
            overrides=override,
            options=options,
        )
    except ValueError as exception:
        echo.echo_critical(str(exception))
    if daemon:
        node = submit(builder)
        echo.echo_success(
            f"submitted ActiveLearningWorkChain<{node.pk}>; follow it with: aiida-mlip watch {node.pk}"
        )
        return
    _, node = run_get_node(builder)
    _print_status(node)
    if not node.is_finished_ok:
        raise SystemExit(1)


def _print_status(node):
    from aiida_mlip.history import format_history

    output = node.outputs.history.get_dict() if "history" in node.outputs else {}
    history = output.get("iterations", node.base.extras.get("history", []))
    echo.echo(
        f"{node.process_label}<{node.pk}>: {node.process_state.value if node.process_state else '?'}"
        + (f", exit {node.exit_status} {node.exit_message or ''}" if node.is_terminated else "")
    )
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
                f"({calibration.get('n_new_pairs', calibration.get('n_pairs'))} new labels), "
                f"factor {calibration.get('factor'):.2f}, exponent {calibration.get('exponent', 1.0):.2f}"
                + (" (fallback: too few pairs)" if calibration.get("fallback") else "")
                + f", rank correlation {'n/a' if spearman is None else f'{spearman:.2f}'}"
            )
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


@cmd_root.command("status")
@arguments.PROCESS("run")
def cmd_status(run):
    """The iteration table and convergence of an active-learning run."""
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
@arguments.DATUM("potential")
def cmd_lineage(potential):
    """Every training run, dataset version and labelling calculation behind a potential."""
    from tabulate import tabulate

    from aiida_mlip.data.potential import PotentialData
    from aiida_mlip.queries import potential_lineage

    if not isinstance(potential, PotentialData):
        echo.echo_critical(f"node <{potential.pk}> is not a PotentialData")
    lineage = potential_lineage(potential)
    echo.echo(tabulate(lineage.as_table(), headers=["kind", "PK", "what", "created"]))
    echo.echo(
        f"\n{len(lineage.training_runs)} training run(s), {len(lineage.datasets)} dataset version(s), "
        f"{len(lineage.labelling_calculations)} labelling calculation(s)"
    )
