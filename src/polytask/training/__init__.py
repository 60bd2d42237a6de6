"""Training components: what a step is made of (``feed``), the step itself (``step``) and several processes
(``distributed``). The recipe that composes them is ``polytask.train``."""
