# Generalises the e-mail outbox into one outbox for every channel (sandbox SMS and DMs land there too).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('channels', '0002_initial'),
    ]

    operations = [
        migrations.RenameModel(old_name='OutboxEmail', new_name='OutboxMessage'),
        migrations.AddField(
            model_name='outboxmessage',
            name='channel',
            field=models.CharField(default='email', max_length=16),
        ),
        migrations.AddField(
            model_name='outboxmessage',
            name='provider_message_id',
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddIndex(
            model_name='outboxmessage',
            index=models.Index(fields=['store', 'channel', '-created_at'], name='outbox_by_store'),
        ),
    ]
