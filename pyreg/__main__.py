from pyreg.cli import run

run()
