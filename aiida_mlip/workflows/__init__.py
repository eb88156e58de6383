"""Work chains of aiida-mlip."""
