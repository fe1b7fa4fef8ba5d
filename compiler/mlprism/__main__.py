from mlprism._internal.cli import console_main

console_main()
