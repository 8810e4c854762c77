import email_validator
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from backoffice.auth.passwords import MIN_PASSWORD_LENGTH, password_problem


def strong_password(form, field):
    problem = password_problem(field.data, email=getattr(getattr(form, "email", None), "data", None))
    if problem:
        raise ValidationError(problem)


class LoginForm(FlaskForm):
    email = EmailField("E-mail address", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    submit = SubmitField("Sign in")


class LogoutForm(FlaskForm):
    submit = SubmitField("Sign out")


class RegisterForm(FlaskForm):
    name = StringField("Your full name", validators=[DataRequired("Tell us your name."), Length(max=200)])
    email = EmailField("Work e-mail address", validators=[DataRequired("Give your e-mail address."), Length(max=254)])
    password = PasswordField(f"Password (at least {MIN_PASSWORD_LENGTH} characters)", validators=[
        DataRequired("Choose a password."),
        strong_password])
    confirm = PasswordField("Password again", validators=[
        DataRequired("Type the password again."), EqualTo("password", "The two passwords are not the same.")])
    submit = SubmitField("Register")

    def validate_email(self, field):
        try:
            field.data = email_validator.validate_email(field.data.strip(), check_deliverability=False).normalized
        except email_validator.EmailNotValidError as error:
            raise ValidationError(f"Enter a valid e-mail address ({error}).") from None


class EmailForm(FlaskForm):
    email = EmailField("E-mail address", validators=[DataRequired("Give your e-mail address."), Length(max=254)])
    submit = SubmitField("Send me a link")


class NewPasswordForm(FlaskForm):
    password = PasswordField(f"New password (at least {MIN_PASSWORD_LENGTH} characters)", validators=[
        DataRequired("Choose a password."),
        strong_password])
    confirm = PasswordField("New password again", validators=[
        DataRequired("Type the password again."), EqualTo("password", "The two passwords are not the same.")])
    submit = SubmitField("Set new password")


class SecondFactorForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired("Enter the code."), Length(max=40)])
    submit = SubmitField("Continue")


class EnrolForm(FlaskForm):
    code = StringField("Six-digit code from your authenticator app",
                       validators=[DataRequired("Enter the code your app shows."), Length(max=20)])
    submit = SubmitField("Turn on the second factor")


class ChangePasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired("Enter your current password."),
                                                            Length(max=1024)])
    password = PasswordField(f"New password (at least {MIN_PASSWORD_LENGTH} characters)", validators=[
        DataRequired("Choose a password."), strong_password])
    confirm = PasswordField("New password again", validators=[
        DataRequired("Type the password again."), EqualTo("password", "The two passwords are not the same.")])
    submit = SubmitField("Change password")
