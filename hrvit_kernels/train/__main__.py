"""``torchrun --nproc_per_node=N -m hrvit_kernels.train MODEL --data-root DIR --work-dir DIR [key=value ...]``"""
import sys

from hrvit_kernels.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
