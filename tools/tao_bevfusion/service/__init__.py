"""The tool functions: compose jobs, studies and presentation into what each tool returns.

Job kinds (a run, a study) are dispatched here through service/kinds.py; nothing below this layer branches
on a job's kind.
"""
