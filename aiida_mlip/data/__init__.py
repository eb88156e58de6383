"""AiiDA data types of aiida-mlip."""
