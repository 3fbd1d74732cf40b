from xcon.cli import main

raise SystemExit(main())
