"""Pseudopotential families for the ``pw`` labeller, installed from a local folder of UPF files.

Quantum ESPRESSO reads norm-conserving, ultrasoft and PAW pseudopotentials from UPF files. A folder
such as Debian's ``/usr/share/espresso/pseudo`` holds several files per element, made with different
exchange-correlation functionals and generators. :func:`select_pseudos` picks one file per element
for a requested functional, and :func:`install_pseudo_family` stores the choice as an aiida-pseudo
``CutoffsPseudoPotentialFamily`` (entry point ``pseudo.family.cutoffs``) with recommended cutoffs, so
that ``PwBaseWorkChain.get_builder_from_protocol`` and our ``pw`` labeller can read them.

Selection rule (deterministic, documented in :func:`select_pseudos`):

1. only UPF files whose header names the element and the requested functional are candidates
   (the functional is read from the header, not guessed from the file name);
2. fully relativistic (spin-orbit) files and bare Coulomb potentials are left out: the labeller runs
   without spin-orbit coupling;
3. files whose header suggests cutoffs (e.g. pslibrary's) are preferred over files that do not;
4. if more than one file remains, the element is ambiguous and the user must choose one with
   ``explicit={"Si": "Si.pbe-rrkj.UPF"}`` (``--pseudo Si=Si.pbe-rrkj.UPF`` on the command line).

Cutoffs (Rydberg, as Quantum ESPRESSO takes them): the ``wfc_cutoff``/``rho_cutoff`` suggested in the
UPF header when they are positive; otherwise :data:`DEFAULT_ECUTWFC` for the wave functions and
:data:`DUAL_NORM_CONSERVING` or :data:`DUAL_AUGMENTED` times that for the charge density. Either can
be overridden per element.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = (
    "DEFAULT_ECUTWFC",
    "DUAL_AUGMENTED",
    "DUAL_NORM_CONSERVING",
    "PseudoSelectionError",
    "UpfHeader",
    "install_pseudo_family",
    "normalise_functional",
    "read_upf_header",
    "recommended_cutoffs",
    "select_pseudos",
)

#: Wave-function cutoff (Ry) used when a UPF header suggests none.
DEFAULT_ECUTWFC = 40.0
#: Charge-density / wave-function cutoff ratio for norm-conserving pseudopotentials.
DUAL_NORM_CONSERVING = 4.0
#: Charge-density / wave-function cutoff ratio for ultrasoft and PAW pseudopotentials.
DUAL_AUGMENTED = 8.0

#: Quantum ESPRESSO's four-part functional names (exchange, correlation, gradient x, gradient c)
#: and the short names they stand for.
_FUNCTIONAL_PARTS = {
    ("SLA", "PW", "PBX", "PBC"): "pbe",
    ("SLA", "PW", "PBE", "PBE"): "pbe",
    ("SLA", "PW", "PSX", "PSC"): "pbesol",
    ("SLA", "PZ", "NOGX", "NOGC"): "pz",
    ("SLA", "PW", "NOGX", "NOGC"): "pw91-lda",
    ("SLA", "B88", "LYP", "BLYP"): "blyp",
    ("SLA", "LYP", "B88", "BLYP"): "blyp",
    ("SLA", "PW", "TPSS", "TPSS"): "tpss",
}
#: Aliases users may type for a functional.
_FUNCTIONAL_ALIASES = {
    "lda": "pz",
    "pz": "pz",
    "pbe": "pbe",
    "pbesol": "pbesol",
    "blyp": "blyp",
    "tpss": "tpss",
}


class PseudoSelectionError(ValueError):
    """No unique pseudopotential could be chosen for some elements; the message names them."""


@dataclass(frozen=True)
class UpfHeader:
    """What :func:`select_pseudos` needs from the header of one UPF file.

    Attributes
    ----------
    path
        The file.
    element
        Chemical symbol.
    functional
        Normalised exchange-correlation functional (``"pbe"``, ``"pbesol"``, ``"pz"``...), or the raw
        header text in lower case when it is not one we know.
    relativistic
        ``"no"``, ``"scalar"`` or ``"full"`` (spin-orbit).
    pseudo_type
        ``"NC"``, ``"US"`` or ``"PAW"``.
    wfc_cutoff, rho_cutoff
        Cutoffs suggested by the header in Ry, ``None`` when the header suggests none (or zero).
    """

    path: pathlib.Path
    element: str
    functional: str
    relativistic: str
    pseudo_type: str
    wfc_cutoff: float | None
    rho_cutoff: float | None

    @property
    def suggests_cutoffs(self) -> bool:
        return self.wfc_cutoff is not None


def normalise_functional(text: str) -> str:
    """Return the short name of a functional given as in a UPF header or typed by a user.

    ``"PBE"``, ``" SLA  PW   PBX  PBC "`` and ``"SLA PW PBE PBE"`` all give ``"pbe"``; ``"lda"`` and
    ``"SLA PZ NOGX NOGC"`` give ``"pz"``. Unknown names come back stripped and in lower case.
    """
    parts = tuple(text.upper().split())
    if len(parts) >= 4 and parts[:4] in _FUNCTIONAL_PARTS:
        return _FUNCTIONAL_PARTS[parts[:4]]
    name = " ".join(parts).lower()
    return _FUNCTIONAL_ALIASES.get(name, name)


def _cutoff(value: str | None) -> float | None:
    if value is None:
        return None
    number = float(value.replace("D", "E").replace("d", "e"))
    return number if number > 0 else None


def read_upf_header(path: str | os.PathLike) -> UpfHeader:
    """Read element, functional, relativistic treatment, type and suggested cutoffs of a UPF file.

    Both UPF v2 (``<PP_HEADER attribute="..."/>``) and the older v1 layout (one value per line,
    followed by its description) are understood.

    Raises
    ------
    ValueError
        If the file is not a UPF file or its header lacks the element or the functional.
    """
    path = pathlib.Path(path)
    text = path.read_text(errors="replace")
    start = text.find("<PP_HEADER")
    if start < 0:
        raise ValueError(f"{path.name} is not a UPF file (no <PP_HEADER>)")
    end = text.find(">", start)
    tag = text[start : end + 1]
    attributes = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', tag))
    if attributes:  # UPF v2
        element = attributes.get("element", "").strip()
        functional = attributes.get("functional", "")
        relativistic = attributes.get("relativistic", "no").strip().lower()
        if attributes.get("has_so", "").strip().lower() in ("t", "true", ".true."):
            relativistic = "full"
        pseudo_type = attributes.get("pseudo_type", "").strip().upper()
        wfc, rho = _cutoff(attributes.get("wfc_cutoff")), _cutoff(attributes.get("rho_cutoff"))
    else:  # UPF v1: "value   description" lines inside <PP_HEADER> ... </PP_HEADER>
        body = text[end + 1 : text.find("</PP_HEADER>", end)]
        fields = {}
        for line in body.splitlines():
            for key, pattern in (
                ("element", r"^\s*(\S+)\s+Element"),
                ("pseudo_type", r"^\s*(\S+)\s+.*pseudopotential"),
                ("functional", r"^(.*?)\s+Exchange-Correlation functional"),
                ("cutoffs", r"^\s*(\S+)\s+(\S+)\s+Suggested cutoff"),
            ):
                match = re.search(pattern, line, flags=re.IGNORECASE)
                if match and key not in fields:
                    fields[key] = match.groups()
        element = fields.get("element", ("",))[0]
        functional = fields.get("functional", ("",))[0]
        pseudo_type = fields.get("pseudo_type", ("",))[0].upper()
        info = text[: text.find("<PP_HEADER")]
        relativistic = "full" if ("Fully-Relativistic" in info or "<PP_ADDINFO>" in text) else "no"
        wfc, rho = (_cutoff(value) for value in fields.get("cutoffs", (None, None)))
    if pseudo_type in ("USPP", "US"):
        pseudo_type = "US"
    if not element or not functional.strip():
        raise ValueError(f"{path.name}: the UPF header names no element or no functional")
    return UpfHeader(
        path, element, normalise_functional(functional), relativistic, pseudo_type or "NC", wfc, rho
    )


def _scan(folder: pathlib.Path) -> list[UpfHeader]:
    headers = []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        try:
            headers.append(read_upf_header(path))
        except (ValueError, UnicodeError, OSError):
            continue  # not a UPF file (Debian's folder also holds .van, .RRKJ3 and scripts)
    return headers


def select_pseudos(
    folder: str | os.PathLike,
    elements: Sequence[str],
    functional: str,
    explicit: Mapping[str, str] | None = None,
) -> dict[str, UpfHeader]:
    """Choose one UPF file per element from ``folder`` for ``functional``.

    Parameters
    ----------
    folder
        Directory with UPF files (other files are ignored).
    elements
        Chemical symbols that need a pseudopotential.
    functional
        ``"pbe"``, ``"pbesol"``, ``"lda"``/``"pz"``, ... compared with each file's header.
    explicit
        Element -> file name in ``folder`` (or a path), taken as given: this is how an ambiguous
        element is resolved. Its functional must still match.

    Returns
    -------
    dict
        Element -> :class:`UpfHeader` of the chosen file.

    Raises
    ------
    PseudoSelectionError
        Naming every element with no candidate for the functional, every ambiguous element with its
        candidates, and every explicit file of another functional or element.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise PseudoSelectionError(f"{folder} is not a directory")
    functional = normalise_functional(functional)
    explicit = dict(explicit or {})
    headers = _scan(folder)
    chosen, missing, ambiguous, wrong = {}, [], {}, []
    for element in elements:
        if element in explicit:
            path = pathlib.Path(explicit[element])
            path = path if path.is_absolute() else folder / path
            try:
                header = read_upf_header(path)
            except (ValueError, OSError) as exception:
                wrong.append(f"{element}={explicit[element]} ({exception})")
                continue
            if header.element != element or header.functional != functional:
                wrong.append(
                    f"{element}={path.name} is a {header.functional} pseudopotential for {header.element}"
                )
                continue
            chosen[element] = header
            continue
        candidates = [h for h in headers if h.element == element and h.functional == functional]
        candidates = [h for h in candidates if h.relativistic != "full" and h.pseudo_type != "1/R"]
        if any(h.suggests_cutoffs for h in candidates):
            candidates = [h for h in candidates if h.suggests_cutoffs]
        if not candidates:
            missing.append(element)
        elif len(candidates) > 1:
            ambiguous[element] = [h.path.name for h in candidates]
        else:
            chosen[element] = candidates[0]
    problems = []
    if missing:
        problems.append(
            f"no {functional} pseudopotential (other than fully relativistic ones) in {folder} for: {', '.join(missing)}"
        )
    for element, names in ambiguous.items():
        problems.append(
            f"{element} is ambiguous ({', '.join(names)}): choose one with --pseudo {element}=FILE"
        )
    problems.extend(f"unusable choice {text}" for text in wrong)
    if problems:
        raise PseudoSelectionError("; ".join(problems))
    return chosen


def recommended_cutoffs(
    headers: Mapping[str, UpfHeader],
    overrides: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, dict[str, float]]:
    """Return aiida-pseudo's cutoff dictionary (Ry) for the chosen files.

    Parameters
    ----------
    headers
        Element -> header, from :func:`select_pseudos`.
    overrides
        Element -> ``(ecutwfc,)`` or ``(ecutwfc, ecutrho)`` in Ry; a missing ``ecutrho`` is the dual
        of the pseudopotential type times ``ecutwfc``.

    Returns
    -------
    dict
        ``{element: {"cutoff_wfc": Ry, "cutoff_rho": Ry}}``.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(headers))
    if unknown:
        raise ValueError(f"cutoffs given for elements that are not installed: {', '.join(unknown)}")
    cutoffs = {}
    for element, header in headers.items():
        dual = DUAL_NORM_CONSERVING if header.pseudo_type == "NC" else DUAL_AUGMENTED
        if element in overrides:
            values = [float(value) for value in overrides[element]]
            wfc = values[0]
            rho = values[1] if len(values) > 1 else dual * wfc
        elif header.suggests_cutoffs:
            wfc = header.wfc_cutoff
            rho = header.rho_cutoff if header.rho_cutoff is not None else dual * wfc
        else:
            wfc, rho = DEFAULT_ECUTWFC, dual * DEFAULT_ECUTWFC
        if rho < wfc * 4.0 - 1e-9:
            raise ValueError(f"{element}: ecutrho {rho} Ry is below 4 x ecutwfc = {4 * wfc} Ry")
        cutoffs[element] = {"cutoff_wfc": float(wfc), "cutoff_rho": float(rho)}
    return cutoffs


def install_pseudo_family(
    folder: str | os.PathLike,
    elements: Sequence[str],
    functional: str,
    label: str,
    explicit: Mapping[str, str] | None = None,
    cutoffs: Mapping[str, Sequence[float]] | None = None,
    description: str | None = None,
):
    """Install a ``CutoffsPseudoPotentialFamily`` named ``label`` from files chosen in ``folder``.

    The chosen files are copied to a temporary folder and handed to aiida-pseudo's
    ``create_from_folder`` (as ``UpfData``, deduplicated by md5). The recommended cutoffs (Ry) are
    stored under the stringency ``"normal"``; the family's extras record the functional
    (``mlip_functional``) and the source files (``mlip_sources``).

    Parameters
    ----------
    folder, elements, functional, explicit
        As in :func:`select_pseudos`.
    label
        Label of the new family; it must not exist yet.
    cutoffs
        Per-element cutoff overrides, as in :func:`recommended_cutoffs` (Ry).
    description
        Description of the group; by default it says where the files came from.

    Returns
    -------
    aiida_pseudo.groups.family.CutoffsPseudoPotentialFamily
        The stored family.

    Raises
    ------
    PseudoSelectionError
        See :func:`select_pseudos`.
    ValueError
        If a family ``label`` exists already, or for bad cutoffs.
    """
    from aiida.plugins import DataFactory, GroupFactory

    family_class = GroupFactory("pseudo.family.cutoffs")
    if family_class.collection.count(filters={"label": label}):
        raise ValueError(f"a pseudopotential family labelled {label!r} exists already")
    headers = select_pseudos(folder, elements, functional, explicit)
    values = recommended_cutoffs(headers, cutoffs)
    functional = normalise_functional(functional)
    with tempfile.TemporaryDirectory() as tmp:
        for header in headers.values():
            shutil.copyfile(header.path, pathlib.Path(tmp) / header.path.name)
        family = family_class.create_from_folder(
            pathlib.Path(tmp),
            label,
            description=description or f"{functional} pseudopotentials from {folder}, chosen by aiida-mlip",
            pseudo_type=DataFactory("pseudo.upf"),
        )
    family.set_cutoffs(values, stringency="normal", unit="Ry")
    family.base.extras.set("mlip_functional", functional)
    family.base.extras.set("mlip_sources", {element: str(header.path) for element, header in headers.items()})
    return family
