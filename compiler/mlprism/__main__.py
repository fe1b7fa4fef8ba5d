from mlprism._internal.cli import main

raise SystemExit(main())
