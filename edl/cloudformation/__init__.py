"""Deploying the lake with CloudFormation: the Jinja2 templates in `templates/`, rendered and
linted by `render`, and applied as stacks by the stack client and stack manager (DESIGN §2).
"""
