"""aiida-mlip: grow machine-learned interatomic potentials by active learning, with AiiDA provenance.

Below the line (``potentials``, ``selection``, ``exploration``, ``engine``) nothing imports AiiDA;
above it (``data``, ``calculations``, ``parsers``, ``workflows``, ``cmdline``, ``queries``) the science
is wrapped as AiiDA nodes and processes.
"""

__version__ = "0.1.0"
