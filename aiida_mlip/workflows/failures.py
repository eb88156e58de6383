"""Why a job failed, in one line, read from what it wrote: for reports, exit messages and ``status``.

A failed step is summed up as the distinct causes with a count, e.g. ``9 x mpirun refuses to run
as root``, so nobody needs ``verdi calcjob gotocomputer`` to learn why 9 of 9 jobs failed. A cause
is read from the job's retrieved files (the scheduler's stderr and stdout, the code's own output
such as pw.x's ``aiida.out``): a known message becomes a short phrase (:data:`KNOWN_CAUSES`); an
unknown one is quoted (the last line of a Python traceback, else pw.x's error block, else the last
line of stderr); a job without any output falls back to its exit message or exception.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable

from aiida import orm

__all__ = (
    "KNOWN_CAUSES",
    "cause_from_text",
    "cause_of",
    "count_causes",
    "describe_failure",
    "labelling_failures",
)

#: Known messages and the short cause each stands for, tried in order (case-sensitive regexes).
KNOWN_CAUSES: tuple[tuple[str, str], ...] = (
    (r"mpirun has detected an attempt to run as root", "mpirun refuses to run as root"),
    (r"Error in routine read_?pp.*\n\s*file (\S+) not found", "pseudopotential file not found: {0}"),
    (r"convergence NOT achieved", "SCF not converged"),
    (r"No EMT-potential for (\w+)", "No EMT-potential for {0}"),
    (r"(?:CUDA|cuda) out of memory", "the GPU ran out of memory"),
    (r"(?:Out Of Memory|oom-kill|MemoryError)", "out of memory"),
    (r"DUE TO TIME LIMIT", "the job hit its wall-time limit"),
    (r"(\S+): (?:command not found|No such file or directory)\s*$", "executable not found: {0}"),
)
#: Lines that say nothing about the cause: OpenMPI's own reports when a program aborts, rulers.
NOISE = re.compile(r"ORTE_ERROR_LOG|MPI_ABORT|^\[[\w.-]+:\d+\]|^[-=*%]{3,}$|^(STOP|stopping \.\.\.)\s*\d*$")
#: Text files of a retrieved folder read for a cause, in this order; other logs (:data:`LOG_SUFFIXES`) after.
OUTPUT_FILES = ("_scheduler-stderr.txt", "aiida.err", "_scheduler-stdout.txt", "aiida.out")
LOG_SUFFIXES = (".out", ".err", ".txt", ".log")
#: Bytes read from the end of each file: causes are printed last.
TAIL_BYTES = 20_000


def _known(text: str) -> str | None:
    for pattern, cause in KNOWN_CAUSES:
        match = re.search(pattern, text, re.MULTILINE)
        if match:
            return cause.format(*match.groups())
    return None


def _quoted(text: str, last_line: bool = True) -> str | None:
    """The line of ``text`` that says what went wrong, for messages no pattern knows.

    A Python exception line, else pw.x's error block, else (with ``last_line``) the last line.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip() and not NOISE.search(line.strip())]
    if not lines:
        return None
    for line in reversed(lines):  # the last line of a Python traceback
        match = re.match(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$", line)
        if match:
            return f"{match.group(1)}: {match.group(2)}"
    pw_error = re.search(r"Error in routine (\S+) \(\d+\):\n\s*(.+)", "\n".join(lines))
    if pw_error:
        return f"pw.x error in {pw_error.group(1)}: {pw_error.group(2).strip()}"
    return lines[-1][:300] if last_line else None


def cause_from_text(text: str) -> str | None:
    """The cause a job's output ``text`` names: a known phrase (:data:`KNOWN_CAUSES`) or a quoted line."""
    return _known(text) or _quoted(text)


def _retrieved_texts(calculation: orm.CalcJobNode) -> list[tuple[str, str]]:
    """``(name, tail)`` of every text file the job retrieved, the scheduler's and the code's first."""
    if "retrieved" not in calculation.outputs:
        return []
    folder = calculation.outputs.retrieved
    names = [name for name in folder.base.repository.list_object_names() if name.endswith(LOG_SUFFIXES)]
    ordered = [name for name in OUTPUT_FILES if name in names] + sorted(set(names) - set(OUTPUT_FILES))
    texts = []
    for name in ordered:
        try:
            content = folder.base.repository.get_object_content(name, mode="rb")[-TAIL_BYTES:]
        except (OSError, IsADirectoryError):
            continue
        texts.append((name, content.decode("utf-8", errors="replace")))
    return texts


def _job_cause(calculation: orm.CalcJobNode) -> str:
    texts = _retrieved_texts(calculation)
    for _, text in texts:
        cause = _known(text)
        if cause:
            return cause
    files = dict(texts)
    # an exception or a pw.x error block anywhere, else the last line of stderr
    for name, last_line in (
        ("_scheduler-stderr.txt", False),
        ("aiida.err", False),
        ("aiida.out", False),
        ("_scheduler-stderr.txt", True),
        ("aiida.err", True),
    ):
        quoted = _quoted(files.get(name, ""), last_line=last_line)
        if quoted:
            return quoted
    return _node_message(calculation)


def _node_message(node: orm.ProcessNode) -> str:
    if node.exception:
        return node.exception.strip().splitlines()[-1][:300]
    if node.exit_message:
        return node.exit_message
    return f"{node.process_label} exit status {node.exit_status}"


def cause_of(node: orm.ProcessNode) -> str:
    """One line on why ``node`` (a CalcJob or a work chain over CalcJobs) failed.

    For a work chain, the last CalcJob it ran is read; when that job's SCF did not converge and the
    work chain restarted it, the number of restarts is added ("SCF not converged after 3 restarts").
    """
    if isinstance(node, orm.CalcJobNode):
        return _job_cause(node)
    jobs = sorted(
        (child for child in node.called_descendants if isinstance(child, orm.CalcJobNode)),
        key=lambda child: child.ctime,
    )
    failed = [job for job in jobs if not job.is_finished_ok]
    if not failed:
        return _node_message(node)
    cause = _job_cause(failed[-1])
    if cause == "SCF not converged" and len(jobs) > 1:
        restarts = sum(1 for job in jobs if _job_cause(job) == "SCF not converged") - 1
        cause = f"SCF not converged after {restarts} restart{'s' if restarts != 1 else ''}"
    return cause


def count_causes(causes: Iterable[str]) -> str:
    """``"9 x mpirun refuses to run as root; 1 x SCF not converged"``: distinct causes, most frequent first."""
    counts = collections.Counter(causes)
    return "; ".join(f"{count} x {cause}" for cause, count in counts.most_common())


def describe_failure(node: orm.ProcessNode) -> str:
    """A failed sub-process's exit message with its cause, for the exit message of the caller."""
    message = node.exit_message or f"exit status {node.exit_status}"
    cause = cause_of(node)
    return message if cause in message else f"{message} (cause: {cause})"


def labelling_failures(run: orm.ProcessNode) -> str | None:
    """``"2 of 40 structures failed to be labelled: 2 x SCF not converged after 4 restarts"`` over every
    labelling of ``run`` (a work chain that calls ``LabellingWorkChain``); ``None`` when none failed.
    """
    labelled, causes = 0, []
    for child in run.called_descendants:
        if child.process_label != "LabellingWorkChain":
            continue
        labelled += child.inputs.structures.n_frames
        if "failures" in child.outputs:
            causes.extend(
                failure.get("cause", failure["error"]) for failure in child.outputs.failures["failures"]
            )
    if not causes:
        return None
    return f"{len(causes)} of {labelled} structures failed to be labelled: {count_causes(causes)}"
