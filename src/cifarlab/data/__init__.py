"""The data layer: fetch the CIFAR-10 archive (``download``), parse it in memory (``archive``),
split it stratified (``split``) and store the splits (``prepared``).

Import the modules themselves: this file imports nothing, so that a stage depends only on the
modules it uses (``dvc.yaml`` lists them).
"""
