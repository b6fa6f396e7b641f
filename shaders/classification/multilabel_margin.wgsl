// Multi-label hinge against lists of class indices, torch.nn.MultiLabelMarginLoss.
#define ML_MARGIN
#define LABEL_LISTS

#import classification/margin
