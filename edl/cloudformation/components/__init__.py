"""The lake's deployable components, one module each: which stacks they are made of, in which
region, from which template, with which parameters, and what they depend on."""
