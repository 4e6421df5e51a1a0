"""Pictures and pages: ``plots`` (one run), ``figures`` (the paper's figures from run
sets), ``html`` (the self-contained report)."""
