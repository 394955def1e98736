from moderator.cli.main import main

raise SystemExit(main())
