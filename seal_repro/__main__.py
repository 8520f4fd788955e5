from seal_repro.cli import main

raise SystemExit(main())
