"""One module per job: wires IO -> domain logic -> IO and returns a ``JobSummary``."""
