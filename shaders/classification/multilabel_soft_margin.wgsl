// Multi-label one-versus-all logistic loss, torch.nn.MultiLabelSoftMarginLoss(weight).
#define ML_SOFT_MARGIN
#define TARGET_VALUES

#import classification/margin
