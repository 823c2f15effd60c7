import sys

try:
    from harness.cli import main
except ImportError as e:
    from kew_plug.extras import missing_extra

    hint = missing_extra(e, "harness")
    if hint is None:
        raise
    sys.exit(f"python -m harness: {hint}")

sys.exit(main())
