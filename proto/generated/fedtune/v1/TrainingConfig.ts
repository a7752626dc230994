// Original file: proto/fedtune.proto


export interface TrainingConfig {
  'local_steps'?: (number);
  'batch_size'?: (number);
  'learning_rate'?: (number | string);
  'weight_decay'?: (number | string);
  'max_seq_len'?: (number);
  'proximal_mu'?: (number | string);
  'lora_aggregation'?: (string);
  'lora_alpha'?: (number | string);
  'optimizer'?: (string);
  'momentum'?: (number | string);
  'lora_dropout'?: (number | string);
  'lora_dropout_stated'?: (boolean);
  'scaffold'?: (boolean);
  'flora_rank'?: (number);
}

export interface TrainingConfig__Output {
  'local_steps': (number);
  'batch_size': (number);
  'learning_rate': (number);
  'weight_decay': (number);
  'max_seq_len': (number);
  'proximal_mu': (number);
  'lora_aggregation': (string);
  'lora_alpha': (number);
  'optimizer': (string);
  'momentum': (number);
  'lora_dropout': (number);
  'lora_dropout_stated': (boolean);
  'scaffold': (boolean);
  'flora_rank': (number);
}
