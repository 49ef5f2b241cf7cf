"""EDL, the Enterprise Data Lake toolkit.

The package holds the `edl` deploy command (`edl.installed_scripts`, `edl.cloudformation`), the
embedded local cloud (`edl.local`), the code that runs in the cloud (`edl.core_resources`) and the
helper library that pipelines and Lambda functions import (`edl.utils`). Shared ground that every
part may use sits at this level: config, naming, errors, paths and the AWS session factory.
"""

__version__ = "0.1.0"
