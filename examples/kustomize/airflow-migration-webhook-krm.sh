#!/bin/sh
# kustomize's exec function: a ResourceList on stdin, the mutated ResourceList on stdout. The function
# annotation takes a path and no arguments, hence this wrapper. Point AMW_BIN at the installed command
# (default: the one on PATH). The per-object report goes to stderr; kustomize drops KRM `results`.
exec "${AMW_BIN:-airflow-migration-webhook}" mutate -q
