"""The HF Trainer with every setting a tweak would write already given."""
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

model = AutoModelForSequenceClassification.from_pretrained("bert-base-uncased")
args = TrainingArguments(output_dir="out", bf16=True, gradient_accumulation_steps=4, gradient_checkpointing=True,
                         torch_compile=True, tf32=True, optim="adamw_torch_fused", dataloader_num_workers=4)
trainer = Trainer(model=model, args=args, train_dataset=None)
trainer.train()
