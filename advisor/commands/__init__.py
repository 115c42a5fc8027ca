"""One module per command: parse its options, call the library, hand the result to ``emit``.

A new command is one module here (a function, and an epilog of examples), one row in
``COMMANDS`` below, and its result type's renderers in advisor/render/emit.py's table."""

# (name, module, function, epilog constant, group): the order is the order of `advisor --help`
COMMANDS: tuple[tuple[str, str, str, str, str], ...] = (
    ("recommend", "recommend", "recommend", "EPILOG", ""),
    ("validate", "validate", "validate", "EPILOG", ""),
    ("schedule", "schedule", "schedule", "EPILOG", ""),
    ("diagnose", "diagnose", "diagnose", "EPILOG", ""),
    ("probe", "probe", "probe", "EPILOG", ""),
    ("sweep", "sweep", "sweep", "EPILOG", ""),
    ("list", "rules", "rules_list", "", "rules"),
    ("show", "rules", "rules_show", "SHOW_EPILOG", "rules"),
    ("check", "rules", "rules_check", "CHECK_EPILOG", "rules"),
    ("fit", "evidence", "rules_fit", "FIT_EPILOG", "rules"),
    ("memory", "memory", "memory", "EPILOG", ""),
    ("models", "models", "models", "EPILOG", ""),
    ("gpus", "gpus", "gpus", "EPILOG", ""),
    ("evidence", "evidence", "evidence", "EPILOG", ""),
)
