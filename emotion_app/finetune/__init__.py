"""Fine-tuning on users' labelled data: uploads checked row by row (``data``), a job
table (``jobs``), how each architecture is trained (``tuners``, ``train``), and a
background worker that runs one job at a time (``runner``); ``cli`` is the command line."""
