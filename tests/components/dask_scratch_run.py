"""A run for the Dask executor's scratch-folder tests: say where it runs and what its init
brought, then write outputs (through the path given as an argument and the environment's).

dask_scratch_run.py OUTPUTS [FILES]: OUTPUTS is the run's outputs folder as the spec rendered
it (the orchestrator's home); FILES extra numbered files are written there too.
"""

import os
import sys

run_dir = os.environ["ORCHESTRATOR_RUN_DIR"]
outputs = os.environ["ORCHESTRATOR_OUTPUTS_PATH"]
artifacts = os.path.join(run_dir, "artifacts")
print(f"run_dir {run_dir}")
print(f"outputs {outputs} {sys.argv[1]}")
greeting = os.path.join(artifacts, "greeting.txt")
if os.path.exists(greeting):
    with open(greeting) as f:
        print(f"greeting {f.read()} {oct(os.stat(greeting).st_mode & 0o777)}")
repo = os.path.join(artifacts, "repo")
if os.path.isdir(repo):
    print(f"repo {' '.join(sorted(n for n in os.listdir(repo) if n != '.git'))}")
with open(os.path.join(sys.argv[1], "a.txt"), "w") as f:
    f.write("from the argument\n")
os.makedirs(os.path.join(outputs, "sub", "deeper"))
with open(os.path.join(outputs, "sub", "deeper", "b.bin"), "wb") as f:
    f.write(bytes(range(256)) * 4)
os.makedirs(os.path.join(outputs, "empty"))
os.symlink("/etc/passwd", os.path.join(outputs, "link"))
os.symlink("a.txt", os.path.join(outputs, "inner-link"))
for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 0):
    with open(os.path.join(outputs, f"extra-{i}.txt"), "w") as f:
        f.write(f"{i}\n")
