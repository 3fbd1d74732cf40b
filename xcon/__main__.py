from xcon.main import main

raise SystemExit(main())
