"""The compiler: document -> resolved tree (``resolve``) -> tree with every size known
(``infer``, on meta tensors, Graph statements compiled to ``torch.fx``) -> registered
``nn.Module`` on the target device (``build``), with the memory check before allocating.
"""
