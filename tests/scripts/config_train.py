# Configuration read by exec_config.py with exec() (nanoGPT's configurator style); not a
# script to run on its own.
steps = 200
batch_size = 16
lr = 1e-2
hidden = 32
