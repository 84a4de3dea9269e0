from hrvit_kernels.metrics.iou import IoUMetric

__all__ = ["IoUMetric"]
