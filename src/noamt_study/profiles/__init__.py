"""The profiles of ``noamt-compare``, one YAML file each, installed as the package noamt_study.profiles."""
