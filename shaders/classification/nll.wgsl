// Negative log-likelihood of log-probabilities, torch.nn.NLLLoss.
#define NLL

#import classification/softmax_rows
